//! Load generator (see bench/README.md).
fn main() {}
