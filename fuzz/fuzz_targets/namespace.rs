//! The namespace parser (`mnemosyne-core/src/namespace.rs`): any text parses
//! or is refused with a message naming it; what parses prints back as the
//! same text, and reads the same through JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemosyne_core::Namespace;

fuzz_target!(|data: &[u8]| {
    mnemosyne_fuzz::abort_on_panic();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Namespace>() {
        Ok(namespace) => {
            assert_eq!(namespace.to_string(), text, "prints back as written");
            let ancestors = namespace.with_ancestors();
            assert_eq!(ancestors.first(), Some(&namespace));
            assert_eq!(ancestors.last(), Some(&Namespace::Global));
            let json = serde_json::to_string(&namespace).expect("a namespace encodes");
            let back: Namespace = serde_json::from_str(&json).expect("and decodes");
            assert_eq!(back, namespace);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("malformed namespace"), "{message}");
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }
});
