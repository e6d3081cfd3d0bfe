//! Reading a source disk image of any format qemu-img reads: its virtual
//! size, its allocated and zero extents, and its bytes. Being written.
