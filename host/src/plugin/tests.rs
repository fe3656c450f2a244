use std::path::{Path, PathBuf};

use sluice_sdk::plugin::AbiVersion;
use sluice_sdk::Registry;

use super::loader::check_abi;
use super::{load_plugins, PluginError};

fn v(major: u32, minor: u32) -> AbiVersion {
    AbiVersion { major, minor }
}

#[test]
fn another_major_is_refused_naming_both_versions_and_the_path() {
    let path = Path::new("/opt/plugins/libticketing.so");
    let e = check_abi(v(1, 0), v(2, 0), path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("/opt/plugins/libticketing.so"), "{msg}");
    assert!(msg.contains("plugin ABI 2.0"), "{msg}");
    assert!(msg.contains("plugin ABI 1.0"), "{msg}");
    assert!(check_abi(v(2, 0), v(1, 0), path).is_err());
}

#[test]
fn a_plugin_for_abi_2_is_refused_by_this_host_naming_both_versions() {
    let path = Path::new("/opt/plugins/libold.so");
    let e = check_abi(sluice_sdk::plugin::ABI_VERSION, v(2, 2), path).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plugin /opt/plugins/libold.so was built for plugin ABI 2.2, but this sluice speaks \
         plugin ABI 3.1: major versions must match; rebuild the plugin against the sluice-sdk \
         of this sluice"
    );
}

#[test]
fn a_newer_minor_is_refused_an_older_one_accepted() {
    let path = Path::new("/p/libx.so");
    let msg = check_abi(v(1, 1), v(1, 2), path).unwrap_err().to_string();
    assert!(
        msg.contains("1.2") && msg.contains("1.1") && msg.contains("upgrade sluice"),
        "{msg}"
    );
    check_abi(v(1, 2), v(1, 1), path).unwrap();
    check_abi(v(1, 2), v(1, 2), path).unwrap();
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let path = PathBuf::from("/nonexistent/dir/libnothing.so");
    let e = load_plugins(std::slice::from_ref(&path), &mut Registry::new()).unwrap_err();
    assert!(matches!(e, PluginError::Unreadable { .. }), "{e:?}");
    assert!(
        e.to_string().contains("/nonexistent/dir/libnothing.so"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfake.so");
    std::fs::write(&path, "this is not an ELF file\n").unwrap();
    let e = load_plugins(std::slice::from_ref(&path), &mut Registry::new()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PluginError::NotALibrary { .. }), "{e:?}");
    assert!(
        msg.contains("libfake.so") && msg.contains("not a loadable library"),
        "{msg}"
    );
}

#[test]
fn a_library_without_the_version_symbol_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty.c");
    std::fs::write(&src, "int not_a_sluice_plugin(void) { return 42; }\n").unwrap();
    let lib = dir.path().join("libempty.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("run cc to build a shared library without Sluice symbols");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = load_plugins(std::slice::from_ref(&lib), &mut Registry::new()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            PluginError::MissingSymbol {
                symbol: "sluice_abi_version",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.contains("libempty.so") && msg.contains("export_plugin!"),
        "{msg}"
    );
}

mod conformance {
    use std::time::Duration;

    use sluice_sdk::plugin::abi::ABI_VERSION;
    use sluice_sdk::{ConnectorKind, Health, Polled, Provider, Registry, SourceContext};
    use sluice_testkit::conformance::{self as suite, cdylib, scripted};

    use super::super::{load_plugins, PluginError};

    fn builtin() -> Registry {
        let mut r = Registry::new();
        sluice_builtin::register(&mut r);
        r
    }

    fn scripted_in_process() -> Registry {
        let mut r = Registry::new();
        scripted::register(&mut r);
        r
    }

    /// A registry holding only the connectors of a plugin crate of this workspace.
    fn plugin(package: &str) -> Registry {
        let lib = cdylib(package);
        let mut r = Registry::new();
        load_plugins(std::slice::from_ref(&lib), &mut r)
            .unwrap_or_else(|e| panic!("loading {}: {e}", lib.display()));
        r
    }

    #[tokio::test]
    async fn file_sink_built_in_and_as_plugin_conform_alike() {
        let (b, p) = (builtin(), plugin("sluice-file-plugin"));
        let info = p.sink("plugin_file").expect("plugin exports the file sink");
        assert!(
            matches!(&info.provider, Provider::Plugin { plugin_name, .. } if plugin_name == "sluice-file-plugin")
        );
        let built_in = suite::check_sink(&suite::file_sink_case(&b, "file")).await;
        let plugged = suite::check_sink(&suite::file_sink_case(&p, "plugin_file")).await;
        assert_eq!(built_in, plugged);
        assert!(
            built_in
                .last()
                .unwrap()
                .starts_with("broken destination: Unavailable("),
            "{built_in:?}"
        );
    }

    /// A plugin allocates with its own copy of the host's allocator, whose per-thread state
    /// is set up on a thread's first call. Host threads come and go (tokio's blocking pool, a
    /// restarted pipeline): a thread that called the plugin ends and a new one calls it.
    #[test]
    fn a_plugin_called_from_new_threads_after_others_ended_keeps_working() {
        let want = tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                suite::check_sink(&suite::file_sink_case(&builtin(), "file")).await
            });
        for round in 0..3 {
            let want = want.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let p = plugin("sluice-file-plugin");
                let got = rt.block_on(async {
                    suite::check_sink(&suite::file_sink_case(&p, "plugin_file")).await
                });
                assert_eq!(got, want, "round {round}");
            })
            .join()
            .expect("the thread calling the plugin ends normally");
        }
    }

    #[tokio::test]
    async fn file_source_built_in_and_as_plugin_conform_alike() {
        let (b, p) = (builtin(), plugin("sluice-file-plugin"));
        let built_in = suite::check_source(&suite::file_source_case(&b, "file")).await;
        let plugged = suite::check_source(&suite::file_source_case(&p, "plugin_file")).await;
        assert_eq!(built_in, plugged);
        assert!(
            built_in.iter().any(|l| l.contains("decode_error=true")),
            "the non-JSON line is flagged"
        );
    }

    #[tokio::test]
    async fn scripted_sink_outcomes_errors_and_fields_cross_the_boundary() {
        let (b, p) = (scripted_in_process(), plugin("sluice-test-plugin"));
        let built_in = suite::check_scripted_sink(&b).await;
        let plugged = suite::check_scripted_sink(&p).await;
        assert_eq!(built_in, plugged);
        assert!(plugged.contains(&"concurrency 3".to_string()));
        assert!(
            plugged
                .iter()
                .any(|l| l.contains("Unavailable(scripted outage, retry_after=Some(1.5s))")),
            "{plugged:?}"
        );
    }

    #[tokio::test]
    async fn scripted_source_conforms_alike_with_keys_headers_and_decode_errors() {
        let (b, p) = (scripted_in_process(), plugin("sluice-test-plugin"));
        let built_in = suite::check_source(&suite::scripted_source_case(&b)).await;
        let plugged = suite::check_source(&suite::scripted_source_case(&p)).await;
        assert_eq!(built_in, plugged);
        assert!(
            plugged.iter().any(|l| l.starts_with("lag Some(")),
            "{plugged:?}"
        );
        assert!(
            plugged
                .last()
                .unwrap()
                .contains("Unavailable(\"scripted outage\")"),
            "{plugged:?}"
        );
    }

    fn file_sink_config(dir: &std::path::Path) -> (serde_json::Value, sluice_sdk::BuildContext) {
        (
            serde_json::json!({ "path": dir.join("out.jsonl") }),
            sluice_sdk::BuildContext {
                pipeline: "t".into(),
                data_dir: dir.into(),
            },
        )
    }

    #[tokio::test]
    async fn a_lent_batch_that_breaks_the_abi_is_refused_by_the_send() {
        use super::super::call::{create_instance, take_status, Op};
        use sluice_sdk::plugin::abi::{code, LentBatch, LentRecord, Slice};

        let plugin = super::super::loader::load(&cdylib("sluice-file-plugin")).unwrap();
        let api = plugin.api;
        let dir = tempfile::tempdir().unwrap();
        let (config, ctx) = file_sink_config(dir.path());
        let h = create_instance(plugin, api.sink_create, "plugin_file", &config, &ctx).unwrap();
        // A stream name that is not UTF-8, then a flag the ABI does not define.
        let bad_name = [0xffu8, 0xfe];
        let mut raw = LentRecord {
            value: Slice::new(b"{}"),
            key: Slice::new(b""),
            stream: Slice::new(&bad_name),
            headers: std::ptr::null(),
            header_count: 0,
            timestamp: 0,
            offset: 0,
            partition: 0,
            flags: 0,
        };
        for want in ["UTF-8", "flags 0x80000000"] {
            let batch = LentBatch {
                records: &raw,
                len: 1,
            };
            // SAFETY: the waker is handed over; `raw` outlives the operation, awaited here.
            let op = Op::start(api, |w, op| unsafe { (api.sink_send)(h, batch, w, op) });
            let refused = match op {
                Ok(op) => op.await.map(drop),
                Err(f) => Err(f),
            };
            assert!(
                matches!(&refused, Err(f) if f.code == code::INVALID && f.message.contains(want)),
                "{want}: {refused:?}"
            );
            raw.stream = Slice::new(b"s");
            raw.flags = 1 << 31;
        }
        // SAFETY: destroyed once.
        take_status(unsafe { (api.sink_destroy)(h) }).unwrap();
    }

    #[tokio::test]
    async fn a_send_given_up_on_lets_go_of_the_lent_batch_before_the_cancel_returns() {
        let p = plugin("sluice-test-plugin");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stall.log");
        let ctx = sluice_sdk::BuildContext {
            pipeline: "t".into(),
            data_dir: dir.path().into(),
        };
        let mut sink = p
            .build_sink("stall", serde_json::json!({ "path": log }), &ctx)
            .unwrap();
        sink.open(sluice_sdk::SinkContext {
            pipeline: "t".into(),
            health: Health::new(),
        })
        .await
        .unwrap();
        let records = suite::sample_records(0, 3);
        let first = String::from_utf8(records[0].value.to_vec()).unwrap();
        let views = sluice_sdk::views(&records);
        let r = tokio::time::timeout(Duration::from_millis(100), sink.send(&views)).await;
        assert!(r.is_err(), "the stall sink never answers");
        // Read at once: the plugin must already have dropped the send, while the batch it
        // was lent was still alive, or the host could not free it now.
        let written = std::fs::read_to_string(&log).unwrap();
        assert_eq!(written, format!("sending\nlet go of {first}\n"));
        drop(views);
        drop(records);
    }

    /// A copy of a loaded plugin's function table as plain words, to break at will without
    /// ever making an invalid `PluginApi`.
    fn table_words() -> [usize; 21] {
        let current = super::super::loader::load(&cdylib("sluice-file-plugin")).unwrap();
        let mut words = [0usize; 21];
        // SAFETY: the loaded table is 168 bytes of `size` and function pointers.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::from_ref(current.api).cast::<usize>(),
                words.as_mut_ptr(),
                21,
            )
        };
        words
    }

    #[test]
    fn a_function_table_shorter_than_abi_3_0_is_refused() {
        use super::super::loader::read_table;
        use super::super::TableError;

        let mut words = table_words();
        assert_eq!(words[0], 168, "an ABI 3.1 table is 168 bytes");
        words[0] = 143;
        // SAFETY: 144 readable bytes, aligned as a table.
        let e = unsafe { read_table(words.as_ptr().cast()) }.unwrap_err();
        assert_eq!(
            e,
            TableError::TooSmall {
                size: 143,
                min: 144
            }
        );
        assert!(e.to_string().contains("143 bytes"), "{e}");
        words[0] = 144;
        // SAFETY: as above.
        let api = unsafe { read_table(words.as_ptr().cast()) }.expect("a whole table is read");
        assert!(
            api.transform_create.is_none()
                && api.transform_apply.is_none()
                && api.transform_destroy.is_none(),
            "nothing past a 3.0 table's 144 bytes is read, though the words after are set"
        );
        words[0] = 168;
        // SAFETY: as above.
        let api = unsafe { read_table(words.as_ptr().cast()) }.expect("a whole table is read");
        assert!(api.transform_create.is_some() && api.transform_destroy.is_some());
    }

    #[test]
    fn a_manifest_with_a_transform_needs_every_transform_slot_named() {
        use super::super::loader::{check_transform_slots, read_table};
        use super::super::TableError;
        use sluice_sdk::plugin::wire::{Manifest, ManifestConnector, ManifestKind};

        let manifest = |kind| Manifest {
            name: "p".into(),
            version: "1".into(),
            sdk_version: "1".into(),
            abi: [3, 1],
            connectors: vec![ManifestConnector {
                type_name: "tag".into(),
                kind,
                version: "1".into(),
                config_schema: serde_json::Value::Null,
            }],
        };
        let mut words = table_words();
        words[0] = 144;
        // SAFETY: 168 readable bytes, aligned as a table.
        let api = unsafe { read_table(words.as_ptr().cast()) }.unwrap();
        check_transform_slots(api, &manifest(ManifestKind::Sink)).expect("no transform listed");
        let e = check_transform_slots(api, &manifest(ManifestKind::Transform)).unwrap_err();
        assert_eq!(
            e,
            TableError::NoTransforms {
                transform: "tag".into(),
                size: 144,
                min: 168
            }
        );
        assert!(e.to_string().contains("transform `tag`"), "{e}");
        words[0] = 168;
        for (slot, name) in [
            (18, "transform_create"),
            (19, "transform_apply"),
            (20, "transform_destroy"),
        ] {
            let mut words = words;
            words[slot] = 0;
            // SAFETY: as above; a null slot reads as `None`.
            let api = unsafe { read_table(words.as_ptr().cast()) }.unwrap();
            let e = check_transform_slots(api, &manifest(ManifestKind::Transform)).unwrap_err();
            assert_eq!(e, TableError::NullSlot(name));
        }
    }

    #[test]
    fn a_plugin_built_for_abi_3_0_loads_with_no_transform_slots() {
        let lib = cdylib("sluice-abi-3-0-plugin");
        let loaded = super::super::loader::load(&lib).expect("a 3.0 plugin loads on a 3.1 host");
        assert_eq!(loaded.manifest.abi, [3, 0]);
        assert!(loaded.api.transform_apply.is_none());
        let mut r = Registry::new();
        load_plugins(std::slice::from_ref(&lib), &mut r).unwrap();
        assert!(r.sink("abi30_lines").is_some());
    }

    #[test]
    fn a_plugin_transform_answers_each_record_of_a_batch_in_one_call() {
        use sluice_sdk::transform::{Applied, TRANSFORM_PANIC};
        use sluice_sdk::{Origin, Record};

        let r = plugin("sluice-test-plugin");
        let info = r.transform("tag").expect("tag transform registered");
        assert_eq!(info.kind, ConnectorKind::Transform);
        let ctx = sluice_sdk::BuildContext {
            pipeline: "t".into(),
            data_dir: ".".into(),
        };
        let t = r
            .build_transform(
                "tag",
                serde_json::json!({
                    "field": "by", "value": "plugin",
                    "drop": { "field": "level", "equals": "debug" },
                    "fail": { "field": "level", "equals": "poison", "kind": "tag.poison" },
                    "panic": { "field": "level", "equals": "boom" },
                }),
                &ctx,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.per_batch());
        let records: Vec<Record> = ["info", "debug", "poison", "boom", "warn"]
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Record::new(
                    format!(r#"{{"level":"{l}"}}"#),
                    Origin::new("s".into(), 0, i as i64),
                )
            })
            .collect();
        let refs: Vec<&Record> = records.iter().collect();
        let mut out = Vec::new();
        t.apply_batch(&refs, &mut out);
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(
            out[0],
            Applied::Changed(bytes::Bytes::from_static(
                br#"{"level":"info","by":"plugin"}"#
            ))
        );
        assert_eq!(out[1], Applied::Skipped);
        let (Applied::Failed(poison), Applied::Failed(boom)) = (&out[2], &out[3]) else {
            panic!("{out:?}")
        };
        assert_eq!(
            (poison.kind(), poison.to_string().as_str()),
            ("tag.poison", "`level` is refused")
        );
        assert_eq!(boom.kind(), TRANSFORM_PANIC);
        assert!(
            boom.to_string().contains("tag: told to panic on `level`"),
            "{boom}"
        );
        assert!(
            matches!(out[4], Applied::Changed(_)),
            "a panic fails one record"
        );

        // One event by itself, as it stands after the transforms before it.
        let mut event = sluice_sdk::transform::Event::new(&records[4]);
        assert!(event.fields().unwrap().set("before", 1.into()));
        assert_eq!(
            t.apply(&mut event),
            Ok(sluice_sdk::transform::Verdict::Keep)
        );
        assert_eq!(
            event.finish().unwrap().as_deref(),
            Some(&br#"{"level":"warn","before":1,"by":"plugin"}"#[..])
        );

        // A configuration error keeps the path of its key, as for a built-in transform.
        let e = r
            .build_transform("tag", serde_json::json!({"field": "", "value": 1}), &ctx)
            .err()
            .unwrap();
        let sluice_sdk::RegistryError::Config(c) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (c.path.as_deref(), c.message.as_str()),
            (Some("field"), "must not be empty")
        );
    }

    #[test]
    fn a_function_table_with_a_null_slot_is_refused_naming_it() {
        use super::super::loader::read_table;
        use super::super::TableError;

        for (slot, name) in [(1, "op_poll"), (5, "sink_send"), (17, "source_destroy")] {
            let mut words = table_words();
            words[slot] = 0;
            // SAFETY: 144 readable bytes, aligned as a table; a null slot is read as a word.
            let e = unsafe { read_table(words.as_ptr().cast()) }.unwrap_err();
            assert_eq!(e, TableError::NullSlot(name));
            assert!(e.to_string().contains(&format!("`{name}`")), "{e}");
        }
    }

    #[tokio::test]
    async fn a_sink_panic_is_a_fatal_error_and_a_new_instance_works() {
        let t = suite::check_sink_panic(&plugin("sluice-test-plugin")).await;
        assert!(
            t[0].starts_with("Fatal(plugin sluice-test-plugin panicked at "),
            "{t:?}"
        );
    }

    #[tokio::test]
    async fn a_source_panic_is_a_fatal_error() {
        let p = plugin("sluice-test-plugin");
        let dir = tempfile::tempdir().unwrap();
        let ctx = sluice_sdk::BuildContext {
            pipeline: "t".into(),
            data_dir: dir.path().into(),
        };
        let mut src = p
            .build_source(
                scripted::TYPE,
                serde_json::json!({"count": 10, "panic_at": 4}),
                &ctx,
            )
            .unwrap();
        src.open(SourceContext {
            pipeline: "t".into(),
            checkpoints: Default::default(),
            health: Health::new(),
        })
        .await
        .unwrap();
        let e = src.poll(100).await.unwrap_err();
        assert!(
            matches!(&e, sluice_sdk::SourceError::Fatal(m) if m.contains("panicked") && m.contains("record 4")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_poll_leaves_the_source_usable() {
        let p = plugin("sluice-file-plugin");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "").unwrap();
        let ctx = sluice_sdk::BuildContext {
            pipeline: "t".into(),
            data_dir: dir.path().into(),
        };
        let mut src = p
            .build_source("plugin_file", serde_json::json!({ "path": path }), &ctx)
            .unwrap();
        src.open(SourceContext {
            pipeline: "t".into(),
            checkpoints: Default::default(),
            health: Health::new(),
        })
        .await
        .unwrap();
        // The file source waits 50 ms at the end of the file: give up on the poll before.
        for _ in 0..5 {
            let r = tokio::time::timeout(Duration::from_millis(5), src.poll(10)).await;
            assert!(r.is_err() || matches!(r, Ok(Ok(Polled::Idle))));
        }
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n").unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            if let Polled::Records(r) = src.poll(10).await.unwrap() {
                got.extend(r);
            }
            if got.len() == 2 {
                break;
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(&got[1].value[..], b"{\"a\":2}");
    }

    #[test]
    fn a_plugin_for_the_next_major_abi_is_refused_naming_both_versions_and_the_path() {
        let lib = cdylib("sluice-abi-next-plugin");
        let e = load_plugins(std::slice::from_ref(&lib), &mut Registry::new()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PluginError::AbiMismatch { .. }), "{e:?}");
        let next = format!("plugin ABI {}.0", ABI_VERSION.major + 1);
        assert!(
            msg.contains(&next) && msg.contains(&format!("plugin ABI {ABI_VERSION}")),
            "{msg}"
        );
        assert!(
            msg.contains(&lib.canonicalize().unwrap().display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn the_manifest_registers_connectors_with_their_plugin() {
        let lib = cdylib("sluice-webhook-plugin");
        let mut r = builtin();
        load_plugins(&[lib.clone(), lib.clone()], &mut r)
            .expect("a library listed twice loads once");
        let info = r.sink("webhook").expect("webhook sink registered");
        assert_eq!(info.kind, ConnectorKind::Sink);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        let Provider::Plugin {
            path,
            plugin_name,
            plugin_version,
            sdk_version,
        } = &info.provider
        else {
            panic!("{:?}", info.provider)
        };
        assert_eq!(path, &lib.canonicalize().unwrap());
        assert_eq!(
            (plugin_name.as_str(), plugin_version.as_str()),
            ("sluice-webhook-plugin", "0.1.0")
        );
        let loaded = super::super::loader::load(&lib).unwrap();
        let c = &loaded.manifest.connectors[0];
        assert_eq!(
            c.config_schema["required"],
            serde_json::json!(["url", "secret"])
        );
        assert_eq!(loaded.manifest.sdk_version, sluice_sdk::SDK_VERSION);
        assert_eq!(sdk_version, sluice_sdk::SDK_VERSION);
        // A missing configuration key is a config error with its path, as for a built-in.
        let e = r
            .build_sink(
                "webhook",
                serde_json::json!({"url": "http://x/"}),
                &sluice_sdk::BuildContext {
                    pipeline: "t".into(),
                    data_dir: ".".into(),
                },
            )
            .err()
            .unwrap();
        assert!(e.to_string().contains("missing field `secret`"), "{e}");
    }

    #[test]
    fn a_plugin_type_that_clashes_with_a_built_in_is_refused() {
        let lib = cdylib("sluice-test-plugin");
        let e = load_plugins(std::slice::from_ref(&lib), &mut scripted_in_process()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PluginError::Register { .. }), "{e:?}");
        assert!(
            msg.contains("already registered") && msg.contains("built in"),
            "{msg}"
        );
    }
}
