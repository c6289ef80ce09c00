// Empty: present so that [build-dependencies] apply (see Cargo.toml).
fn main() {}
