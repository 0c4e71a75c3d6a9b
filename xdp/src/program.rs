//! The XDP program that steers one UDP port to AF_XDP sockets, loaded and attached by the
//! `bpf` system call.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`'s `BPF_XDP`.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// The program's verdict for what is not ours: the kernel's stack takes it.
const XDP_PASS: i32 = 2;
/// `bpf_redirect_map`'s helper number.
const HELPER_REDIRECT_MAP: i32 = 51;

/// The program, attached to an interface: dropped (or the process gone), it is taken off.
#[derive(Debug)]
pub struct Steering {
    // Field order is drop order: the link first, so the program leaves the interface before
    // the map of sockets goes.
    _link: OwnedFd,
    _program: OwnedFd,
    _map: OwnedFd,
    /// Whether the driver runs it (native XDP) rather than the kernel's generic hook.
    pub native: bool,
}

impl Steering {
    /// Loads the program for UDP `port`, puts `sockets[q]` in its map for queue `q`, and attaches
    /// it to the interface `ifindex`: natively where the driver can, else in the generic hook.
    /// Fails with `EBUSY` while another XDP program is on the interface (an earlier process of
    /// ours that has not yet let go, during an upgrade).
    pub fn attach(ifindex: u32, port: u16, sockets: &[RawFd]) -> io::Result<Steering> {
        let entries = u32::try_from(sockets.len().max(1)).map_err(io::Error::other)?;
        let map = create_map(entries)?;
        for (queue, socket) in sockets.iter().enumerate() {
            let queue = u32::try_from(queue).map_err(io::Error::other)?;
            update_map(&map, queue, *socket)?;
        }
        let program = load(&map, port)?;
        let (link, native) = match link(&program, ifindex, XDP_FLAGS_DRV_MODE) {
            Ok(link) => (link, true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(e),
            Err(_) => (link(&program, ifindex, XDP_FLAGS_SKB_MODE)?, false),
        };
        Ok(Steering {
            _link: link,
            _program: program,
            _map: map,
            native,
        })
    }
}

/// The index of the interface called `name`.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// How many receive queues the interface has (one AF_XDP socket serves each).
pub fn interface_queues(name: &str) -> io::Result<u32> {
    let entries = std::fs::read_dir(format!("/sys/class/net/{name}/queues"))?;
    let mut queues = 0;
    for entry in entries {
        if entry?.file_name().to_string_lossy().starts_with("rx-") {
            queues += 1;
        }
    }
    Ok(queues.max(1))
}

/// A `union bpf_attr`, as wide as any command here needs; zeroed, as the kernel requires of
/// every byte a command does not use.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }

    fn u32(&mut self, offset: usize, value: u32) -> &mut Attr {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    fn u64(&mut self, offset: usize, value: u64) -> &mut Attr {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    /// Runs `cmd` with this attribute; a new descriptor for the commands that make one.
    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: the kernel reads (and for some commands writes) at most `size_of::<Attr>()`
        // bytes of the buffer passed with that size; pointers inside it were set by the caller
        // to buffers that outlive this call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                std::mem::size_of::<Attr>(),
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(result)
    }

    fn call_fd(&mut self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = RawFd::try_from(self.call(cmd)?).map_err(io::Error::other)?;
        // SAFETY: the command returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// An XSKMAP: queue index to AF_XDP socket.
fn create_map(entries: u32) -> io::Result<OwnedFd> {
    Attr::new()
        .u32(0, BPF_MAP_TYPE_XSKMAP)
        .u32(4, 4) // key: the queue index
        .u32(8, 4) // value: the socket's descriptor
        .u32(12, entries)
        .call_fd(BPF_MAP_CREATE)
}

fn update_map(map: &OwnedFd, queue: u32, socket: RawFd) -> io::Result<()> {
    let key = queue;
    let value = u32::try_from(socket).map_err(io::Error::other)?;
    Attr::new()
        .u32(0, u32::try_from(map.as_raw_fd()).map_err(io::Error::other)?)
        .u64(8, &raw const key as u64)
        .u64(16, &raw const value as u64)
        .call(BPF_MAP_UPDATE_ELEM)
        .map(drop)
}

fn load(map: &OwnedFd, port: u16) -> io::Result<OwnedFd> {
    let instructions = steer_port(map.as_raw_fd(), port);
    // The project's license: the kernel asks a GPL-compatible one only of programs calling
    // GPL-only helpers, which `bpf_redirect_map` is not.
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = Attr::new();
    attr.u32(0, BPF_PROG_TYPE_XDP)
        .u32(
            4,
            u32::try_from(instructions.len()).map_err(io::Error::other)?,
        )
        .u64(8, instructions.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1) // log level: the verifier says why, if it refuses
        .u32(28, u32::try_from(log.len()).map_err(io::Error::other)?)
        .u64(32, log.as_mut_ptr() as u64);
    attr.0[48..48 + 10].copy_from_slice(b"foobar_dns");
    attr.call_fd(BPF_PROG_LOAD).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        let said = String::from_utf8_lossy(&log[..end]);
        let last = said.lines().rev().find(|l| !l.is_empty()).unwrap_or("");
        io::Error::new(e.kind(), format!("XDP program refused: {e} ({last})"))
    })
}

fn link(program: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    Attr::new()
        .u32(
            0,
            u32::try_from(program.as_raw_fd()).map_err(io::Error::other)?,
        )
        .u32(4, ifindex)
        .u32(8, BPF_XDP)
        .u32(12, flags)
        .call_fd(BPF_LINK_CREATE)
}

/// One BPF instruction: `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Instruction {
    code: u8,
    registers: u8,
    offset: i16,
    immediate: i32,
}

/// The program, in BPF instructions (registers: r1 the context on entry, then helper
/// arguments; r0 the verdict; r6 keeps the context):
///
/// ```text
///     r6 = r1; r2 = ctx->data; r3 = ctx->data_end
///     if r2 + 42 > r3: pass                          Ethernet + IPv4 + UDP
///     if ethertype == IPv4:
///         if version/IHL != 0x45 or protocol != UDP: pass   (options: the kernel's)
///         if MF or fragment offset: pass
///         if UDP destination port != port: pass
///     else if ethertype == IPv6:
///         if r2 + 62 > r3: pass                      Ethernet + IPv6 + UDP
///         if next header != UDP or destination port != port: pass
///     else: pass
///     return bpf_redirect_map(&sockets, ctx->rx_queue_index, XDP_PASS)
/// pass:
///     return XDP_PASS
/// ```
///
/// Fields are compared as loaded: a big-endian field read by a native load equals the field's
/// value converted with `to_be`.
fn steer_port(map: RawFd, port: u16) -> Vec<Instruction> {
    let port = i32::from(port.to_be());
    let ipv4 = i32::from(0x0800u16.to_be());
    let ipv6 = i32::from(0x86ddu16.to_be());
    // Flags and fragment offset without DF: a fragment or the first of several.
    let fragment = i32::from(0x3fffu16.to_be());
    const UDP: i32 = 17;
    // Labels: where `pass` and `redirect` are (instruction indices), checked below.
    const V6: i16 = 18;
    const REDIRECT: i16 = 26;
    const PASS: i16 = 32;
    let mut p = Program::default();
    p.mov_reg(6, 1);
    p.load(LDX_W, 2, 1, 0); // data
    p.load(LDX_W, 3, 1, 4); // data_end
    p.mov_reg(4, 2);
    p.add(4, 42);
    p.jump_reg(JGT_X, 4, 3, PASS);
    p.load(LDX_H, 5, 2, 12); // ethertype
    p.jump_imm(JNE_K, 5, ipv4, V6);
    p.load(LDX_B, 5, 2, 14); // version and header length
    p.jump_imm(JNE_K, 5, 0x45, PASS);
    p.load(LDX_B, 5, 2, 23); // protocol
    p.jump_imm(JNE_K, 5, UDP, PASS);
    p.load(LDX_H, 5, 2, 20); // flags and fragment offset
    p.and(5, fragment);
    p.jump_imm(JNE_K, 5, 0, PASS);
    p.load(LDX_H, 5, 2, 36); // UDP destination port
    p.jump_imm(JNE_K, 5, port, PASS);
    p.jump(REDIRECT);
    p.label(V6);
    p.jump_imm(JNE_K, 5, ipv6, PASS);
    p.mov_reg(4, 2);
    p.add(4, 62);
    p.jump_reg(JGT_X, 4, 3, PASS);
    p.load(LDX_B, 5, 2, 20); // next header
    p.jump_imm(JNE_K, 5, UDP, PASS);
    p.load(LDX_H, 5, 2, 56); // UDP destination port
    p.jump_imm(JNE_K, 5, port, PASS);
    p.label(REDIRECT);
    p.load(LDX_W, 2, 6, 16); // rx_queue_index
    p.load_map(1, map);
    p.mov_imm(3, XDP_PASS); // the verdict when the queue has no socket
    p.call(HELPER_REDIRECT_MAP);
    p.exit();
    p.label(PASS);
    p.mov_imm(0, XDP_PASS);
    p.exit();
    p.0
}

const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;

/// A tiny assembler: each method appends one instruction; jumps name their target's index.
#[derive(Default)]
struct Program(Vec<Instruction>);

impl Program {
    fn push(&mut self, code: u8, dst: u8, src: u8, offset: i16, immediate: i32) {
        self.0.push(Instruction {
            code,
            registers: dst | (src << 4),
            offset,
            immediate,
        });
    }

    /// Checks that a label's index is where the code has got to.
    fn label(&self, at: i16) {
        assert_eq!(self.0.len(), at as usize, "label out of place");
    }

    fn relative(&self, target: i16) -> i16 {
        target - self.0.len() as i16 - 1
    }

    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.push(0xbf, dst, src, 0, 0);
    }

    fn mov_imm(&mut self, dst: u8, value: i32) {
        self.push(0xb7, dst, 0, 0, value);
    }

    fn add(&mut self, dst: u8, value: i32) {
        self.push(0x07, dst, 0, 0, value);
    }

    fn and(&mut self, dst: u8, value: i32) {
        self.push(0x57, dst, 0, 0, value);
    }

    fn load(&mut self, code: u8, dst: u8, src: u8, offset: i16) {
        self.push(code, dst, src, offset, 0);
    }

    fn jump_imm(&mut self, code: u8, dst: u8, value: i32, target: i16) {
        let offset = self.relative(target);
        self.push(code, dst, 0, offset, value);
    }

    fn jump_reg(&mut self, code: u8, dst: u8, src: u8, target: i16) {
        let offset = self.relative(target);
        self.push(code, dst, src, offset, 0);
    }

    fn jump(&mut self, target: i16) {
        let offset = self.relative(target);
        self.push(0x05, 0, 0, offset, 0);
    }

    /// `dst = map`: the two-instruction 64-bit load whose source register 1 says the value is
    /// a map's descriptor.
    fn load_map(&mut self, dst: u8, map: RawFd) {
        self.push(0x18, dst, 1, 0, map);
        self.push(0, 0, 0, 0, 0);
    }

    fn call(&mut self, helper: i32) {
        self.push(0x85, 0, 0, 0, helper);
    }

    fn exit(&mut self) {
        self.push(0x95, 0, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_has_its_labels_in_place() {
        // `label` asserts each label's index as the program is built.
        let program = steer_port(3, 53);
        assert_eq!(program.len(), 34);
        // The port compared is the wire's byte order as a native load reads it.
        assert!(
            program
                .iter()
                .any(|i| i.code == JNE_K && i.immediate == i32::from(53u16.to_be()))
        );
    }
}
