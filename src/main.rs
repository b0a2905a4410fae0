fn main() {
    println!("{}", ztinit::version::line());
}
