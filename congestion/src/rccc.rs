//! RCCC receiver-credit congestion control (to be written).
