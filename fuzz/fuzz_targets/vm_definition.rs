//! The VM definition parser (TOML from a user or an API client): any bytes give a
//! definition or an error, never a panic, and a definition survives its TOML.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(definition) = gasang_api::VmDefinition::from_toml(text) {
        let again = gasang_api::VmDefinition::from_toml(&definition.to_toml());
        assert_eq!(
            again.ok(),
            Some(definition),
            "a definition survives its TOML"
        );
    }
});
