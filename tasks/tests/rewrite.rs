//! Writing predictions into copies of task files: only the predicted column
//! changes, every other byte (comments, multiword-token and empty-node lines,
//! separators, blank lines, CRLF endings) is kept.

use std::path::Path;

use pixel_tasks::conllu::{parse_conllu, rewrite_conllu};
use pixel_tasks::glue::{add_glue_column, SST2_LABELS};
use pixel_tasks::ner::{rewrite_ner, NER_LABELS};
use pixel_tasks::DataError;

const CONLLU: &str = "# sent_id = 1\r\n# text = Don't go.\r\n\
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\r\n\
1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_\r\n\
2\tn't\tnot\tPART\t_\t_\t3\tadvmod\t_\t_\r\n\
2.1\tx\tx\tX\t_\t_\t_\t_\t3:dep\t_\r\n\
3\tgo\tgo\tVERB\t_\t_\t0\troot\t_\tSpaceAfter=No\r\n\
4\t.\t.\tPUNCT\t_\t_\t3\tpunct\t_\t_\r\n\
\r\n\
1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\r\n\
\r\n";

#[test]
fn conllu_rewrite_changes_only_the_edited_columns() {
    let path = Path::new("mem.conllu");
    let mut seen = Vec::new();
    let out = rewrite_conllu(CONLLU, path, |s, w, cols| {
        seen.push((s, w));
        cols[3] = format!("P{s}{w}");
        cols[6] = "9".into();
    })
    .unwrap();
    assert_eq!(seen, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]);
    let (g, p): (Vec<&str>, Vec<&str>) = (
        CONLLU.split_inclusive('\n').collect(),
        out.split_inclusive('\n').collect(),
    );
    assert_eq!(g.len(), p.len());
    for (g, p) in g.iter().zip(&p) {
        assert!(p.ends_with("\r\n"));
        let id = g.split('\t').next().unwrap();
        if id.parse::<usize>().is_err() {
            assert_eq!(g, p); // comments, 1-2, 2.1, blank lines
            continue;
        }
        let (gc, pc): (Vec<&str>, Vec<&str>) = (g.split('\t').collect(), p.split('\t').collect());
        for c in [0, 1, 2, 4, 5, 7, 8, 9] {
            assert_eq!(gc[c], pc[c]);
        }
        assert!(pc[3].starts_with('P') && pc[6] == "9");
    }
    // The words' line numbers are what the rewrite follows.
    let s = parse_conllu(CONLLU, path).unwrap();
    assert_eq!(s[0].words[2].line, 7);
}

#[test]
fn conllu_rewrite_rejects_what_the_reader_rejects() {
    let bad = "1\tDo\tdo\tAUX\t_\t_\t3\taux\t_\t_\n\n";
    let err = rewrite_conllu(bad, Path::new("bad.conllu"), |_, _, _| {}).unwrap_err();
    assert!(matches!(err, DataError::Parse { line: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("bad.conllu:"), "{err}");
}

#[test]
fn ner_rewrite_keeps_tokens_separators_and_blank_lines() {
    let text = "Obi B-PER\nwent\tO\n\n\n  Lagos   B-LOC  \r\n\nok O";
    let out = rewrite_ner(text, Path::new("mem.txt"), &NER_LABELS, |s, t| {
        format!("T{s}{t}")
    })
    .unwrap();
    assert_eq!(out, "Obi T00\nwent\tT01\n\n\n  Lagos   T10  \r\n\nok T20");
    let err = rewrite_ner("a B-XYZ\n", Path::new("x.txt"), &NER_LABELS, |_, _| {
        String::new()
    })
    .unwrap_err();
    assert!(err.to_string().contains("x.txt:1"), "{err}");
}

#[test]
fn glue_column_is_appended_to_every_line() {
    let text = "sentence\tlabel\r\ngood film \t1\r\nbad\t0";
    let values = vec!["1".to_string(), "1".to_string()];
    let out = add_glue_column(
        text,
        Path::new("t.tsv"),
        &SST2_LABELS,
        "prediction",
        &values,
    )
    .unwrap();
    assert_eq!(
        out,
        "sentence\tlabel\tprediction\r\ngood film \t1\t1\r\nbad\t0\t1"
    );
    let err =
        add_glue_column(text, Path::new("t.tsv"), &SST2_LABELS, "p", &values[..1]).unwrap_err();
    assert!(err.to_string().contains("2 examples but 1 values"), "{err}");
}
