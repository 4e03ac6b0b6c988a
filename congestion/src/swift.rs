//! swift (to be written).
