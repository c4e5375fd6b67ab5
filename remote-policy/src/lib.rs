//! remote-policy: checks the capability graph of remote interfaces.
