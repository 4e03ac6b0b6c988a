//! The NCCL network plugin (`libnccl-net-weir.so`). Its content lands with the plugin issue; the
//! crate exists now so the workspace has the layout of DESIGN.md.
