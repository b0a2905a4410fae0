mod verify_gpu;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("verify-gpu") {
        std::process::exit(verify_gpu::main(&args[1..]));
    }
    eprintln!("xtask: no commands yet");
    std::process::exit(2);
}
