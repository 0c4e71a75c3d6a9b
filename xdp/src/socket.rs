//! An AF_XDP socket bound to one queue of an interface, with its packet memory (UMEM) and the
//! four rings shared with the kernel: fill (frames the kernel may receive into), rx (frames
//! received), tx (frames to send) and completion (frames sent, ours again).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// Bytes per frame: a page's half, the least the kernel takes; the kernel puts a received
/// packet 256 bytes in, so a query of up to 1,792 bytes fits (larger ones are dropped, as
/// anything over the MTU of most links would be), and so does any answer over UDP (at most
/// 1,232 bytes of DNS and 62 of headers).
const FRAME_SIZE: u32 = 2048;
/// Frames per socket: 8 MiB of memory, pinned.
const FRAMES: u32 = 4096;
/// Entries of each ring: half the frames may wait in any one of them.
const RING_SIZE: u32 = FRAMES / 2;

/// A received frame handed to [`Xsk::answer`]'s closure: the packet, and the room after its
/// start that an answer may be written into (the whole rest of its frame).
#[derive(Debug)]
pub struct Frame<'a> {
    buffer: &'a mut [u8],
    len: usize,
}

impl<'a> Frame<'a> {
    /// The frame from the packet's start (its Ethernet header) to the frame's end, and the
    /// packet's length: the packet is read from it and an answer written over it.
    pub fn into_parts(self) -> (&'a mut [u8], usize) {
        (self.buffer, self.len)
    }
}

/// Frames the kernel dropped on the way to a socket, since it was bound (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Larger than a frame, or otherwise not taken.
    pub dropped: u64,
    /// The rx ring was full: the worker fell behind.
    pub ring_full: u64,
    /// No free frame in the fill ring to receive into.
    pub fill_ring_empty: u64,
}

/// One AF_XDP socket with its own UMEM.
#[derive(Debug)]
pub struct Xsk {
    // Rings and memory are unmapped before the socket closes (field order is drop order).
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    umem: Mapping,
    fd: OwnedFd,
    /// Frames that are ours and in no ring.
    free: Vec<u64>,
}

impl Xsk {
    /// A socket on queue `queue` of the interface `ifindex`, in zero-copy mode where the driver
    /// has it, else copying; every frame given to the kernel to receive into.
    pub fn bind(ifindex: u32, queue: u32) -> io::Result<Xsk> {
        // SAFETY: a plain system call; the descriptor returned is owned here.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let umem = Mapping::anonymous(FRAMES as usize * FRAME_SIZE as usize)?;
        let registration = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        set_option(&fd, libc::XDP_UMEM_REG, &registration)?;
        for ring in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            set_option(&fd, ring, &RING_SIZE)?;
        }
        let offsets = mmap_offsets(&fd)?;
        let fill = Ring::map(&fd, &offsets.fr, libc::XDP_UMEM_PGOFF_FILL_RING as i64)?;
        let completion = Ring::map(
            &fd,
            &offsets.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as i64,
        )?;
        let rx = Ring::map(&fd, &offsets.rx, libc::XDP_PGOFF_RX_RING)?;
        let tx = Ring::map(&fd, &offsets.tx, libc::XDP_PGOFF_TX_RING)?;
        let address = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `address` is a `sockaddr_xdp` of the length given, alive for the call.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut socket = Xsk {
            rx,
            tx,
            fill,
            completion,
            umem,
            fd,
            free: (0..FRAMES).map(|i| u64::from(i * FRAME_SIZE)).collect(),
        };
        socket.refill();
        Ok(socket)
    }

    /// What the kernel counted for this socket: frames it dropped rather than hand over.
    pub fn statistics(&self) -> io::Result<Statistics> {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut stats: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `stats`.
        let got = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&raw mut stats).cast(),
                &raw mut len,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Statistics {
            dropped: stats.rx_dropped,
            ring_full: stats.rx_ring_full,
            fill_ring_empty: stats.rx_fill_ring_empty_descs,
        })
    }

    /// The socket's descriptor, for the steering program's map.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Waits up to `timeout` for a frame to arrive; whether one has.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one `pollfd`, alive for the call.
        let ready = unsafe { libc::poll(&raw mut poll, 1, millis) };
        match ready {
            ..0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            0 => Ok(false),
            _ if poll.revents & (libc::POLLERR | libc::POLLNVAL) != 0 => {
                Err(io::Error::other("the XDP socket reports an error"))
            }
            _ => Ok(true),
        }
    }

    /// Takes up to `batch` received frames and hands each to `answer`, which returns the
    /// length of the answer it wrote over the packet, or none to send nothing; queues the
    /// answers and has the kernel send them. The number of frames taken, and of answers
    /// queued (fewer when `answer` sent nothing, or the tx ring had no room).
    pub fn answer(
        &mut self,
        batch: u32,
        mut answer: impl FnMut(Frame<'_>) -> Option<usize>,
    ) -> io::Result<(usize, usize)> {
        self.reclaim();
        self.refill();
        if self.fill.needs_wakeup() {
            // A zero-copy driver that ran out of frames waits to be told there are more
            // (copy mode never asks).
            self.wake_receive()?;
        }
        let (first, received) = self.rx.available();
        let received = received.min(batch);
        let (mut slot, room) = self.tx.room();
        let mut queued = 0;
        for i in 0..received {
            let desc = self.rx.read(first.wrapping_add(i));
            let base = desc.addr - desc.addr % u64::from(FRAME_SIZE);
            let (start, end) = (desc.addr as usize, (base + u64::from(FRAME_SIZE)) as usize);
            let len = desc.len as usize;
            if end > self.umem.len || start + len > end || queued == room {
                self.free.push(base);
                continue;
            }
            // SAFETY: `start..end` lies within the UMEM (checked above), in a frame the kernel
            // has handed back to us through the rx ring and will not touch until we give it
            // back; no other reference to it exists.
            let buffer =
                unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.add(start), end - start) };
            match answer(Frame { buffer, len }) {
                Some(reply) if reply <= end - start => {
                    self.tx.write(
                        slot,
                        libc::xdp_desc {
                            addr: desc.addr,
                            len: reply as u32,
                            options: 0,
                        },
                    );
                    slot = slot.wrapping_add(1);
                    queued += 1;
                }
                _ => self.free.push(base),
            }
        }
        self.rx.release(received);
        if queued > 0 {
            self.tx.submit(queued);
        }
        if self.tx.needs_wakeup() {
            self.kick()?;
        }
        Ok((received as usize, queued as usize))
    }

    /// Tells the driver the fill ring has frames again.
    fn wake_receive(&self) -> io::Result<()> {
        // SAFETY: a receive of nothing, into no buffer: the kernel only looks at the rings.
        let woken = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        nudged(woken)
    }

    /// Has the kernel send what the tx ring holds (copy mode sends only when asked).
    fn kick(&self) -> io::Result<()> {
        // SAFETY: a send of nothing, with no buffers: the kernel only looks at the rings.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        nudged(sent)
    }

    /// Frames the kernel has sent are ours again.
    fn reclaim(&mut self) {
        let (first, done) = self.completion.available();
        for i in 0..done {
            let addr = self.completion.read(first.wrapping_add(i));
            self.free.push(addr - addr % u64::from(FRAME_SIZE));
        }
        self.completion.release(done);
    }

    /// Gives the kernel every free frame the fill ring has room for.
    fn refill(&mut self) {
        let (mut slot, room) = self.fill.room();
        let count = room.min(self.free.len() as u32);
        for _ in 0..count {
            if let Some(frame) = self.free.pop() {
                self.fill.write(slot, frame);
                slot = slot.wrapping_add(1);
            }
        }
        if count > 0 {
            self.fill.submit(count);
        }
    }
}

/// A ring shared with the kernel: one side produces, the other consumes; indices run freely
/// and wrap, masked into the array.
#[derive(Debug)]
struct Ring<T> {
    _mapping: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
}

// SAFETY: the ring's memory is owned by the `Xsk` that holds it and used from one thread at a
// time (`Xsk` methods take `&mut self` or read only the indices, which are atomics).
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(fd: &OwnedFd, offsets: &libc::xdp_ring_offset, page_offset: i64) -> io::Result<Ring<T>> {
        let len = offsets.desc as usize + RING_SIZE as usize * std::mem::size_of::<T>();
        let mapping = Mapping::shared(fd, len, page_offset)?;
        let at = |offset: u64| mapping.ptr.wrapping_add(offset as usize);
        Ok(Ring {
            producer: at(offsets.producer).cast(),
            consumer: at(offsets.consumer).cast(),
            flags: at(offsets.flags).cast(),
            entries: at(offsets.desc).cast(),
            _mapping: mapping,
        })
    }

    fn index(&self, which: *const AtomicU32) -> &AtomicU32 {
        // SAFETY: the kernel's offsets place each index, a naturally aligned u32, inside the
        // mapping this ring owns for as long as it lives.
        unsafe { &*which }
    }

    /// For a ring we consume: the first index to read and how many entries wait.
    fn available(&self) -> (u32, u32) {
        let produced = self.index(self.producer).load(Ordering::Acquire);
        let consumed = self.index(self.consumer).load(Ordering::Relaxed);
        (consumed, produced.wrapping_sub(consumed))
    }

    /// For a ring we produce: the first index to write and how many entries are free.
    fn room(&self) -> (u32, u32) {
        let produced = self.index(self.producer).load(Ordering::Relaxed);
        let consumed = self.index(self.consumer).load(Ordering::Acquire);
        (produced, RING_SIZE - produced.wrapping_sub(consumed))
    }

    fn read(&self, index: u32) -> T {
        // SAFETY: masked into the ring's `RING_SIZE` entries, which its mapping holds; the
        // entry was published by the kernel before its producer index (read with Acquire).
        unsafe { self.entries.add((index & (RING_SIZE - 1)) as usize).read() }
    }

    fn write(&self, index: u32, value: T) {
        // SAFETY: masked into the ring's entries; a free slot (from `room`), which the kernel
        // does not read until the producer index passes it.
        unsafe {
            self.entries
                .add((index & (RING_SIZE - 1)) as usize)
                .write(value)
        }
    }

    /// Consumed `count` entries: their slots are the kernel's again.
    fn release(&self, count: u32) {
        let consumer = self.index(self.consumer);
        consumer.store(
            consumer.load(Ordering::Relaxed).wrapping_add(count),
            Ordering::Release,
        );
    }

    /// Wrote `count` entries: the kernel may take them.
    fn submit(&self, count: u32) {
        let producer = self.index(self.producer);
        producer.store(
            producer.load(Ordering::Relaxed).wrapping_add(count),
            Ordering::Release,
        );
    }

    fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// Memory mapped here, unmapped when dropped.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain memory, owned by whoever holds the mapping.
unsafe impl Send for Mapping {}

impl Mapping {
    /// The UMEM: private memory, populated at once (the kernel pins it).
    fn anonymous(len: usize) -> io::Result<Mapping> {
        Mapping::new(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    }

    /// A ring, at the socket's `offset`.
    fn shared(fd: &OwnedFd, len: usize, offset: i64) -> io::Result<Mapping> {
        Mapping::new(
            len,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            offset,
        )
    }

    fn new(len: usize, flags: libc::c_int, fd: RawFd, offset: i64) -> io::Result<Mapping> {
        // SAFETY: a new mapping the kernel places; nothing aliases it until it is returned.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; nothing borrowed from it outlives
        // its owner.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The outcome of a wake-up call: a ring being worked on, or a card busy, is no error (the next
/// call does it).
fn nudged(result: libc::ssize_t) -> io::Result<()> {
    if result >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(()),
        _ => Err(e),
    }
}

fn set_option<T>(fd: &OwnedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size given.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mmap_offsets(fd: &OwnedFd) -> io::Result<libc::xdp_mmap_offsets> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut offsets: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `offsets`.
    let got = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&raw mut offsets).cast(),
            &raw mut len,
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(offsets)
}
