//! The `nsqrs` binary: argument parsing and wiring only; the work is in the library.

fn main() {
    println!("nsqrs");
}
