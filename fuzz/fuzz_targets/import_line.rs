//! One line of an `import` file: parsed as `mnemosyne import` parses it (a
//! JSON `Memory`) and checked against the limits; a line that passes is
//! stored (with its vector and links) on a real database and reads back as
//! written. Nothing valid may fail in storage (a timestamp out of range, a
//! text the FTS index refuses); nothing invalid may get in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnemosyne_core::{Memory, OnConflict};

fuzz_target!(|data: &[u8]| {
    mnemosyne_fuzz::abort_on_panic();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(memory) = serde_json::from_str::<Memory>(text) else {
        return;
    };
    let store = mnemosyne_fuzz::store();
    if memory.validate(store.limits()).is_err() {
        return;
    }
    mnemosyne_fuzz::runtime().block_on(async {
        let outcome = match store
            .import_batch(&[memory.clone()], OnConflict::Skip)
            .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                assert!(
                    mnemosyne_fuzz::is_refusal(&error),
                    "a valid memory failed to import: {error}\n{text}"
                );
                return;
            }
        };
        assert_eq!(outcome.inserted + outcome.skipped, 1, "{outcome:?}");
        let stored = store
            .get(memory.id)
            .await
            .expect("an imported memory reads back");
        if outcome.inserted == 1 {
            assert_eq!(stored.content, memory.content);
            assert_eq!(stored.summary, memory.summary);
            assert_eq!(stored.namespace, memory.namespace);
            assert_eq!(stored.importance, memory.importance);
            assert_eq!(stored.archived, memory.archived);
        }
        let links: Vec<_> = memory
            .links
            .iter()
            .map(|l| (memory.id, l.clone()))
            .collect();
        if let Err(error) = store.import_links(&links).await {
            assert!(
                mnemosyne_fuzz::is_refusal(&error),
                "links of a valid memory failed: {error}\n{text}"
            );
        }
    });
});
