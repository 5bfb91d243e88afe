//! The VMM control socket's request parser: any bytes a client sends give a request,
//! an error or end of input; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    // Every line in turn, as the control connection reads them.
    while let Ok(Some(request)) =
        gasang_control::read_message::<gasang_control::Request>(&mut reader)
    {
        let line = gasang_control::encode(&request);
        let again = gasang_control::read_message::<gasang_control::Request>(&mut line.as_bytes());
        assert_eq!(
            again.ok().flatten(),
            Some(request),
            "a request survives its encoding"
        );
    }
});
