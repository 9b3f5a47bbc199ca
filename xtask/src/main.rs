//! `cargo xtask <command>`: project automation.

fn main() {
    println!("xtask: no commands yet");
}
