// `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust the macro cannot
// tell Cargo to watch the directory: without this, a new migration file would not reach an
// incrementally built binary.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
