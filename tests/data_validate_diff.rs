//! Validate reports exactly the rows deleted, altered and added on target; autocorrect repairs
//! them; validate is then clean. Also drives the `zdm-run validate` binary with the sandbox
//! inventory to check the exit code and the JSON report.

mod data_support;

use data_support::*;

use std::collections::BTreeSet;
use std::process::Command;

use scylla::value::CqlValue;
use zdm_run::data::{migrate, validate, NoProgress, Selection, ValidateOptions, ValidationReport};
use zdm_testkit::{keyspace::*, unique_name, KeyspaceGuard, Sandbox};

const OLD: i64 = 1_650_000_000_000_000;

fn keys(list: &[std::collections::BTreeMap<String, String>]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|k| (k["bucket"].clone(), k["item"].clone()))
        .collect()
}

fn pairs(v: &[(i32, i32)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Runs `zdm-run validate` on the keyspace with the sandbox inventory (and `extra` flags);
/// returns the exit code and the parsed report.
fn validate_binary(ks: &str, dir: &std::path::Path, extra: &[&str]) -> (i32, ValidationReport) {
    let env = Sandbox::load();
    let inventory = env.get("SANDBOX_INVENTORY");
    let report = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_zdm-run"))
        .args([
            "validate",
            "-i",
            inventory,
            "--keyspace",
            ks,
            "--splits",
            "16",
            // Each call is a new check of changed data, never the resumption of an earlier one
            // (a range that timed out under load would otherwise leave a resumable checkpoint).
            "--fresh",
        ])
        .arg("--state-dir")
        .arg(dir)
        .arg("--report")
        .arg(&report)
        .args(extra)
        .output()
        .expect("run zdm-run validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in ["ZDM_ORIGIN_PASSWORD", "ZDM_TARGET_PASSWORD"] {
        let pw = env.get(secret);
        assert!(
            !stdout.contains(pw) && !stderr.contains(pw),
            "a password reached the output"
        );
    }
    let code = out.status.code().expect("exit code");
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}); stdout: {stdout} stderr: {stderr}"));
    (code, serde_json::from_str(&text).expect("report JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_deletes_alters_and_additions_are_reported_by_key_and_autocorrected() {
    let cfg = config();
    let c = connect(&cfg).await;
    let ks = unique_name("zdm_data_diff");
    let _guard = KeyspaceGuard::new(&ks);
    create_schema(
        &c,
        &ks,
        &[format!(
            "CREATE TABLE {ks}.items (bucket int, item int, label text, qty int, tags set<text>, \
             PRIMARY KEY (bucket, item))"
        )],
    )
    .await;
    for b in 0..20 {
        for i in 0..10 {
            exec(&c.origin, &format!(
                "INSERT INTO {ks}.items (bucket, item, label, qty, tags) VALUES ({b}, {i}, 'l{b}-{i}', {i}, {{'t{i}'}}) USING TIMESTAMP {}",
                OLD + b * 100 + i
            )).await;
        }
    }
    let sel = Selection {
        keyspaces: vec![ks.clone()],
        tables: vec![],
    };
    let s = migrate(&cfg, &sel, &NoProgress).await.expect("migrate");
    assert_eq!((s.rows_read, s.ranges_failed), (200, 0));

    let t = &c.target;
    for (b, i) in [(1, 1), (5, 3), (17, 9)] {
        exec(
            t,
            &format!("DELETE FROM {ks}.items WHERE bucket = {b} AND item = {i}"),
        )
        .await;
    }
    exec(
        t,
        &format!("UPDATE {ks}.items SET label = 'tampered' WHERE bucket = 2 AND item = 2"),
    )
    .await;
    exec(
        t,
        &format!("UPDATE {ks}.items SET tags = tags + {{'rogue'}} WHERE bucket = 8 AND item = 4"),
    )
    .await;
    // A newer tombstone: a re-copy with origin's timestamp alone could never undo it.
    exec(
        t,
        &format!("DELETE qty FROM {ks}.items WHERE bucket = 9 AND item = 9"),
    )
    .await;
    exec(
        t,
        &format!("INSERT INTO {ks}.items (bucket, item, label) VALUES (100, 1, 'x')"),
    )
    .await;
    exec(
        t,
        &format!("INSERT INTO {ks}.items (bucket, item, label) VALUES (101, 2, 'y')"),
    )
    .await;

    let r = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .expect("validate");
    let tv = &r.tables[0];
    assert_eq!(
        (r.missing, r.mismatched, r.extra),
        (3, 3, 2),
        "{}",
        r.human()
    );
    assert_eq!(keys(&tv.missing_keys), pairs(&[(1, 1), (5, 3), (17, 9)]));
    assert_eq!(keys(&tv.extra_keys), pairs(&[(100, 1), (101, 2)]));
    let mism: BTreeSet<(String, String, String)> = tv
        .mismatched_rows
        .iter()
        .flat_map(|m| {
            m.columns
                .keys()
                .map(|c| (m.key["bucket"].clone(), m.key["item"].clone(), c.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> =
        [("2", "2", "label"), ("8", "4", "tags"), ("9", "9", "qty")]
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
    assert_eq!(mism, expected, "{}", r.human());
    assert_eq!(r.rows_compared, 200);

    // The binary: same findings, non-zero exit code, report on disk, no password in output.
    let dir = tempfile::tempdir().unwrap();
    let (code, bin_report) = validate_binary(&ks, dir.path(), &[]);
    assert_eq!(code, 2, "differences must fail the command");
    assert_eq!(
        (bin_report.missing, bin_report.mismatched, bin_report.extra),
        (3, 3, 2)
    );

    // Autocorrect missing and mismatched, through the binary: the report keeps what was found
    // and what was corrected; the two extra rows remain, so the exit code still says 2.
    let (code, r) = validate_binary(&ks, dir.path(), &["--autocorrect"]);
    assert_eq!((r.missing, r.mismatched, r.extra), (3, 3, 2), "found");
    assert_eq!(
        (
            r.corrected_missing,
            r.corrected_mismatched,
            r.corrected_extra,
            r.corrections_failed
        ),
        (3, 3, 0, 0)
    );
    assert_eq!(code, 2, "the uncorrected extra rows remain: {}", r.human());
    let r = validate(&cfg, &sel, &ValidateOptions::default(), &NoProgress)
        .await
        .expect("validate after autocorrect");
    assert_eq!(
        (r.missing, r.mismatched, r.extra),
        (0, 0, 2),
        "{}",
        r.human()
    );
    for (b, i, col, want) in [
        (2, 2, "label", CqlValue::Text("l2-2".into())),
        (
            8,
            4,
            "tags",
            CqlValue::Set(vec![CqlValue::Text("t4".into())]),
        ),
        (9, 9, "qty", CqlValue::Int(9)),
        (1, 1, "label", CqlValue::Text("l1-1".into())),
    ] {
        let r = rows(
            t,
            &format!("SELECT {col} FROM {ks}.items WHERE bucket = {b} AND item = {i}"),
        )
        .await;
        assert_eq!(
            r[0].columns[0],
            Some(want),
            "({b}, {i}).{col} after autocorrect"
        );
    }

    // Extra rows are only deleted when asked. Every difference this run finds it corrects, so
    // nothing remains and the command succeeds although it found 2 extra rows.
    let (code, r) = validate_binary(&ks, dir.path(), &["--autocorrect-extra"]);
    assert_eq!((r.missing, r.mismatched, r.extra), (0, 0, 2), "found");
    assert_eq!((r.corrected_extra, r.corrections_failed), (2, 0));
    assert_eq!(
        code,
        0,
        "every difference was corrected, none remains: {}",
        r.human()
    );
    let (code, clean) = validate_binary(&ks, dir.path(), &[]);
    assert_eq!(
        (
            clean.missing,
            clean.mismatched,
            clean.extra,
            clean.rows_compared
        ),
        (0, 0, 0, 200)
    );
    assert_eq!(code, 0, "a clean validation exits 0");

    // A sampled validation checks a quarter of the token ranges.
    let mut sampled_cfg = cfg.clone();
    sampled_cfg.splits = Some(16);
    let r = validate(
        &sampled_cfg,
        &sel,
        &ValidateOptions {
            sample_percent: 25.0,
            ..ValidateOptions::default()
        },
        &NoProgress,
    )
    .await
    .expect("sampled validate");
    assert_eq!(r.tables[0].ranges_checked, 4);
    assert!(
        r.rows_compared > 0 && r.rows_compared < 200,
        "{}",
        r.rows_compared
    );
}
