fn main() { eprintln!("no scenario yet"); }
