//! AF_XDP for foobar's DNS: datagrams to one UDP port taken off the network card before the
//! kernel's IP and UDP stack, answered from user space, and sent back the same way.
//!
//! Two parts, as Knot's XDP mode has them:
//! - [`Steering`]: an XDP program on an interface that hands UDP datagrams to one port (IPv4
//!   without options, IPv6 without extension headers, never fragments) to the AF_XDP socket of
//!   the queue they arrived on, and passes everything else (ARP, ICMP, TCP, other ports) to the
//!   kernel as if it were not there. It is attached through a BPF link: closing it, or the
//!   process ending in any way, takes the program off.
//! - [`Xsk`]: one AF_XDP socket per queue, with its packet memory (UMEM) and four rings, on
//!   which a worker receives frames and sends answers written in place.
//!
//! Written here rather than taken from a crate: the crates that load XDP programs do it from a
//! compiled BPF object (aya) or through libbpf and libxdp (C libraries to build and ship), and
//! the program here is 34 instructions; the ring code follows `<linux/if_xdp.h>` and the
//! kernel's `Documentation/networking/af_xdp.rst`. This is the workspace's one crate with
//! unsafe code, each block saying why it holds.

mod program;
mod socket;

pub use program::{Steering, interface_index, interface_queues};
pub use socket::{Frame, Statistics, Xsk};
