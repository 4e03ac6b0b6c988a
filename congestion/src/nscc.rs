//! nscc (to be written).
