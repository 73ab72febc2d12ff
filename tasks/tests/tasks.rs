//! Task data readers (CoNLL-U, MasakhaNER, GLUE TSV) and metrics (accuracy,
//! seqeval-style entity F1, UAS/LAS).

use std::path::{Path, PathBuf};

use pixel_tasks::conllu::{deprel_index, read_conllu, upos_index, UD_HEAD_LABELS, UPOS_LABELS};
use pixel_tasks::glue::{read_glue_single, SST2_LABELS};
use pixel_tasks::metrics::{
    accuracy, accuracy_nested, attachment_scores, entity_scores, sentence_entities,
    AttachmentCounter, Entity, MetricError,
};
use pixel_tasks::ner::{read_ner, NER_LABELS};
use pixel_tasks::DataError;

const DATA: &str = "/work/shared/data";

/// A fresh temp directory for this test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pixel-tasks-{}-{name}", std::process::id()));
    // Left over from an earlier run with the same pid: start empty.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, text).unwrap();
    p
}

/// Asserts that `err` is a parse error for `path` at `line`, and that its
/// message names both.
fn assert_parse_error(err: DataError, path: &Path, line: usize) {
    let msg = err.to_string();
    match err {
        DataError::Parse {
            path: p, line: l, ..
        } => {
            assert_eq!(p, path, "{msg}");
            assert_eq!(l, line, "{msg}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!(":{line}:")), "{msg}");
}

fn ewt_like() -> String {
    [
        "# sent_id = a",
        "# text = I can't go.",
        "1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_",
        "2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_",
        "2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_",
        "3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_",
        "4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_",
        "4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t4:conj\t_",
        "5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_",
        "",
        "# sent_id = b",
        "1\tJohn\tJohn\tPROPN\tNNP\t_\t0\troot\t_\t_",
        "2\t's\t's\tPART\tPOS\t_\t1\tcase:poss\t_\t_",
        "3\tdog\tdog\tNOUN\tNN\t_\t1\tnmod:poss\t_\t_",
        "",
    ]
    .join("\n")
}

#[test]
fn label_lists() {
    assert_eq!(UPOS_LABELS.len(), 17);
    assert_eq!(UD_HEAD_LABELS.len(), 38);
    assert_eq!(UD_HEAD_LABELS[0], "_");
    assert_eq!(upos_index("ADJ"), Some(0));
    assert_eq!(upos_index("X"), Some(16));
    assert_eq!(upos_index("adj"), None);
    assert_eq!(deprel_index("acl:relcl"), deprel_index("acl"));
    assert_eq!(deprel_index("xcomp"), Some(37));
    assert_eq!(NER_LABELS.len(), 9);
    assert_eq!(NER_LABELS[0], "O");
}

#[test]
fn conllu_reader_skips_ranges_and_empty_nodes() {
    let dir = temp_dir("conllu-ok");
    let p = write(&dir, "a.conllu", &ewt_like());
    let s = read_conllu(&p).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].forms(), ["I", "ca", "n't", "go", "."]);
    assert_eq!(s[0].heads(), [4, 4, 4, 0, 4]);
    let upos: Vec<&str> = s[0].words.iter().map(|w| w.upos.as_str()).collect();
    assert_eq!(upos, ["PRON", "AUX", "PART", "VERB", "PUNCT"]);
    assert_eq!(
        s[0].upos_ids(),
        ["PRON", "AUX", "PART", "VERB", "PUNCT"]
            .iter()
            .map(|t| upos_index(t).unwrap())
            .collect::<Vec<_>>()
    );
    let rels: Vec<&str> = s[1].words.iter().map(|w| w.deprel.as_str()).collect();
    assert_eq!(rels, ["root", "case", "nmod"]);
    assert_eq!(s[1].deprel_ids()[2], deprel_index("nmod").unwrap());
    assert_eq!(s[1].words[2].line, 14);

    // No trailing blank line, CRLF line endings: same result.
    let crlf = ewt_like().trim_end().replace('\n', "\r\n");
    let p2 = write(&dir, "b.conllu", &crlf);
    assert_eq!(read_conllu(&p2).unwrap(), s);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn conllu_reader_errors_name_file_and_line() {
    let dir = temp_dir("conllu-bad");
    let good = ewt_like();
    let lines: Vec<&str> = good.lines().collect();
    // (line to replace (1-based), replacement)
    let cases = [
        (3, "1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_"),    // 9 columns
        (3, "x\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_"), // non-integer ID
        (3, "1\tI\tI\tPRON\tPRP\t_\tfour\tnsubj\t_\t_"), // non-integer HEAD
        (3, "1\tI\tI\tPRON\tPRP\t_\t-1\tnsubj\t_\t_"), // negative HEAD
        (3, "1\tI\tI\tPRN\tPRP\t_\t4\tnsubj\t_\t_"),  // unknown UPOS
        (3, "1\tI\tI\tPRON\tPRP\t_\t4\tsubject\t_\t_"), // unknown DEPREL
        (3, "1\tI\tI\tPRON\tPRP\t_\t9\tnsubj\t_\t_"), // HEAD beyond sentence
        (4, "2-x\tcan't\t_\t_\t_\t_\t_\t_\t_\t_"),    // bad range
        (8, "4.x\tgone\tgo\tVERB\tVBN\t_\t_\t_\t4:conj\t_"), // bad empty node
        (9, "6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_"),  // ID out of sequence
    ];
    for (k, (line, text)) in cases.iter().enumerate() {
        let mut l = lines.clone();
        l[line - 1] = text;
        let p = write(&dir, &format!("bad{k}.conllu"), &l.join("\n"));
        let err = read_conllu(&p).expect_err(text);
        assert_parse_error(err, &p, *line);
    }
    // Missing file: an I/O error naming the file.
    let missing = dir.join("missing.conllu");
    let err = read_conllu(&missing).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("missing.conllu"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ner_reader() {
    let dir = temp_dir("ner");
    let text = "Mixed B-ORG\nMartial I-ORG\nArts I-ORG\n, O\n\n\nLagos B-LOC\ntoday\tB-DATE\n";
    let p = write(&dir, "train.txt", text);
    let s = read_ner(&p).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].tokens, ["Mixed", "Martial", "Arts", ","]);
    assert_eq!(s[0].tags, ["B-ORG", "I-ORG", "I-ORG", "O"]);
    assert_eq!(s[0].tag_ids, [5, 6, 6, 0]);
    assert_eq!(s[1].tokens, ["Lagos", "today"]);
    assert_eq!(s[1].tag_ids, [7, 1]);

    let bad = [
        ("a O\nb\n", 2),        // one field
        ("a O\n\nb c O\n", 3),  // three fields
        ("a O\nb B-MISC\n", 2), // unknown tag
    ];
    for (k, (text, line)) in bad.iter().enumerate() {
        let p = write(&dir, &format!("bad{k}.txt"), text);
        assert_parse_error(read_ner(&p).unwrap_err(), &p, *line);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn glue_reader() {
    let dir = temp_dir("glue");
    let p = write(
        &dir,
        "train.tsv",
        "sentence\tlabel\nhide new secretions \t0\nwell-conceived \t1\n",
    );
    let s = read_glue_single(&p).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].sentence, "hide new secretions ");
    assert_eq!(s[0].label, 0);
    assert_eq!(s[1].label, 1);
    assert_eq!(s[0].sentence_b, None);
    let p = write(
        &dir,
        "pairs.tsv",
        "sentence1\tsentence2\tlabel\nA man sleeps.\tA person rests.\t1\nIt rains.\tIt is dry.\t0\n",
    );
    let s = read_glue_single(&p).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].sentence, "A man sleeps.");
    assert_eq!(s[0].sentence_b.as_deref(), Some("A person rests."));
    assert_eq!(s[1].label, 0);

    let bad = [
        ("text\tlabel\na\t0\n", 1),                          // wrong header
        ("sentence\tlabel\na\t0\nb\n", 3),                   // one field
        ("sentence\tlabel\na\t0\nb\t1\t2\n", 3),             // three fields
        ("sentence\tlabel\na\t0\nb\t2\n", 3),                // unknown label
        ("", 1),                                             // no header
        ("sentence1\tsentence2\tlabel\na\tb\t1\nc\t0\n", 3), // pair row with 2 fields
    ];
    for (k, (text, line)) in bad.iter().enumerate() {
        let p = write(&dir, &format!("bad{k}.tsv"), text);
        assert_parse_error(read_glue_single(&p).unwrap_err(), &p, *line);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Real data, with the counts documented in /work/shared/data/README.md.
#[test]
fn real_ud_files() {
    let files = [
        ("ud/UD_English-EWT/en_ewt-ud-train.conllu", 12_544, 204_577),
        ("ud/UD_English-EWT/en_ewt-ud-dev.conllu", 2_001, 25_147),
        ("ud/UD_Tamil-TTB/ta_ttb-ud-train.conllu", 400, 6_329),
        ("ud/UD_Tamil-TTB/ta_ttb-ud-dev.conllu", 80, 1_263),
        (
            "ud/UD_Coptic-Scriptorium/cop_scriptorium-ud-train.conllu",
            1_419,
            35_768,
        ),
        (
            "ud/UD_Coptic-Scriptorium/cop_scriptorium-ud-dev.conllu",
            381,
            10_963,
        ),
    ];
    for (file, n_sent, n_words) in files {
        let path = Path::new(DATA).join(file);
        if !path.exists() {
            eprintln!("skipping: {} not found", path.display());
            continue;
        }
        let s = read_conllu(&path).unwrap();
        assert!(!s.is_empty());
        assert_eq!(s.len(), n_sent, "{file}");
        let words: usize = s.iter().map(|x| x.len()).sum();
        assert_eq!(words, n_words, "{file}");
        for w in s.iter().flat_map(|x| &x.words) {
            assert!(UPOS_LABELS.contains(&w.upos.as_str()));
            assert!(UD_HEAD_LABELS.contains(&w.deprel.as_str()));
        }
        // Exactly one root per sentence in these treebanks.
        for x in &s {
            assert_eq!(x.heads().iter().filter(|&&h| h == 0).count(), 1, "{file}");
        }
    }
}

#[test]
fn real_ner_files() {
    // (file, sentences, tokens, entities PER/ORG/LOC/DATE)
    let files = [
        (
            "ner/masakhaner1/amh/train.txt",
            1_750,
            25_819,
            [505, 277, 1_050, 415],
        ),
        ("ner/masakhaner1/amh/dev.txt", 250, 3_749, [83, 43, 143, 59]),
        (
            "ner/masakhaner1/pcm/train.txt",
            2_124,
            52_604,
            [1_914, 787, 996, 949],
        ),
        (
            "ner/masakhaner1/pcm/dev.txt",
            306,
            7_728,
            [421, 45, 63, 109],
        ),
    ];
    for (file, n_sent, n_tok, ents) in files {
        let path = Path::new(DATA).join(file);
        if !path.exists() {
            eprintln!("skipping: {} not found", path.display());
            continue;
        }
        let s = read_ner(&path).unwrap();
        assert!(!s.is_empty());
        assert_eq!(s.len(), n_sent, "{file}");
        assert_eq!(s.iter().map(|x| x.len()).sum::<usize>(), n_tok, "{file}");
        for x in &s {
            assert_eq!(x.tokens.len(), x.tags.len());
            for t in &x.tags {
                assert!(NER_LABELS.contains(&t.as_str()), "{file}: {t}");
            }
        }
        // Gold against itself: F1 = 1. The README's entity counts are counts
        // of B- tags; seqeval-style chunking also starts an entity at an I-
        // without a matching B- before it, so its counts can only be larger.
        let tags: Vec<Vec<String>> = s.iter().map(|x| x.tags.clone()).collect();
        let sc = entity_scores(&tags, &tags).unwrap();
        assert_eq!(sc.micro.f1, 1.0);
        for (ty, n) in ["PER", "ORG", "LOC", "DATE"].iter().zip(ents) {
            let b = format!("B-{ty}");
            let n_b = tags.iter().flatten().filter(|t| **t == b).count();
            assert_eq!(n_b, n, "{file} {ty}");
            let support = sc.per_type[*ty].support;
            assert!(support >= n, "{file} {ty}");
            if support > n {
                eprintln!(
                    "{file}: {ty}: {} entities start with an I- tag",
                    support - n
                );
            }
        }
    }
}

#[test]
fn real_sst2_files() {
    let files = [
        ("sst2/glue_train.tsv", 29_780, 37_569),
        ("sst2/train.tsv", 26_786, 33_828),
        ("sst2/dev.tsv", 2_994, 3_741),
    ];
    for (file, neg, pos) in files {
        let path = Path::new(DATA).join(file);
        if !path.exists() {
            eprintln!("skipping: {} not found", path.display());
            continue;
        }
        let s = read_glue_single(&path).unwrap();
        assert!(!s.is_empty());
        let n_pos = s.iter().filter(|e| e.label == 1).count();
        assert_eq!((s.len() - n_pos, n_pos), (neg, pos), "{file}");
        assert!(s.iter().all(|e| e.label < SST2_LABELS.len()));
    }
}

// ---------------------------------------------------------------- metrics

fn ents(tags: &[&str]) -> Vec<(String, usize, usize)> {
    sentence_entities(tags)
        .into_iter()
        .map(|Entity { label, start, end }| (label, start, end))
        .collect()
}

fn e(label: &str, start: usize, end: usize) -> (String, usize, usize) {
    (label.to_string(), start, end)
}

fn sents(x: &[&[&str]]) -> Vec<Vec<String>> {
    x.iter()
        .map(|s| s.iter().map(|t| t.to_string()).collect())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn entity_extraction_edge_cases() {
    // Plain BIO.
    assert_eq!(
        ents(&["B-PER", "I-PER", "O", "B-LOC"]),
        [e("PER", 0, 2), e("LOC", 3, 4)]
    );
    // I- without a preceding B- starts an entity (at the start and after O).
    assert_eq!(ents(&["I-PER", "I-PER", "O"]), [e("PER", 0, 2)]);
    assert_eq!(
        ents(&["O", "I-LOC", "O", "I-LOC"]),
        [e("LOC", 1, 2), e("LOC", 3, 4)]
    );
    // I- of a different type after B-X: two entities.
    assert_eq!(ents(&["B-PER", "I-LOC"]), [e("PER", 0, 1), e("LOC", 1, 2)]);
    assert_eq!(
        ents(&["B-ORG", "I-PER", "I-ORG"]),
        [e("ORG", 0, 1), e("PER", 1, 2), e("ORG", 2, 3)]
    );
    // Adjacent B-X B-X: two entities.
    assert_eq!(ents(&["B-PER", "B-PER"]), [e("PER", 0, 1), e("PER", 1, 2)]);
    assert_eq!(
        ents(&["B-PER", "I-PER", "B-PER"]),
        [e("PER", 0, 2), e("PER", 2, 3)]
    );
    // Entity at the very end is closed.
    assert_eq!(ents(&["O", "B-LOC", "I-LOC"]), [e("LOC", 1, 3)]);
    // Nothing.
    assert!(ents(&["O", "O"]).is_empty());
    assert!(ents(&[] as &[&str]).is_empty());
    // IOBES tags, as seqeval's default mode also reads them.
    assert_eq!(
        ents(&["S-PER", "B-LOC", "E-LOC", "E-LOC"]),
        [e("PER", 0, 1), e("LOC", 1, 3), e("LOC", 3, 4)]
    );
}

#[test]
fn entity_scores_hand_made() {
    // seqeval's documented example: gold MISC 3..6 and PER; prediction has
    // MISC 2..6 (wrong span) and PER. TP = 1, P = 1/2, R = 1/2, F1 = 1/2.
    let gold = sents(&[
        &["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"],
        &["B-PER", "I-PER", "O"],
    ]);
    let pred = sents(&[
        &["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"],
        &["B-PER", "I-PER", "O"],
    ]);
    let s = entity_scores(&gold, &pred).unwrap();
    assert!(close(s.micro.precision, 0.5));
    assert!(close(s.micro.recall, 0.5));
    assert!(close(s.micro.f1, 0.5));
    assert_eq!(s.per_type["MISC"].f1, 0.0);
    assert_eq!(s.per_type["MISC"].support, 1);
    assert_eq!(s.per_type["PER"].f1, 1.0);

    // Gold: PER(0..2) | LOC(4..5), LOC(5..6)   (B-LOC B-LOC = two entities)
    // Pred: PER(0..2) (I- without B- starts it) | LOC(4..6)
    // TP = 1 (PER); P = 1/2, R = 1/3, F1 = 2*(1/2)*(1/3)/(1/2+1/3) = 0.4.
    let gold = sents(&[&["B-PER", "I-PER", "O"], &["B-LOC", "B-LOC"]]);
    let pred = sents(&[&["I-PER", "I-PER", "O"], &["B-LOC", "I-LOC"]]);
    let s = entity_scores(&gold, &pred).unwrap();
    assert_eq!(
        (s.micro.correct, s.micro.predicted, s.micro.support),
        (1, 2, 3)
    );
    assert!(close(s.micro.precision, 0.5));
    assert!(close(s.micro.recall, 1.0 / 3.0));
    assert!(close(s.micro.f1, 0.4));
    assert!(close(s.per_type["LOC"].precision, 0.0));
    assert!(close(s.per_type["PER"].f1, 1.0));

    // Type switch inside a span: gold ORG(0..3); pred ORG(0..1), PER(1..2),
    // ORG(2..3). TP = 0: P = R = F1 = 0.
    let gold = sents(&[&["B-ORG", "I-ORG", "I-ORG"]]);
    let pred = sents(&[&["B-ORG", "I-PER", "I-ORG"]]);
    let s = entity_scores(&gold, &pred).unwrap();
    assert_eq!(
        (s.micro.correct, s.micro.predicted, s.micro.support),
        (0, 3, 1)
    );
    assert_eq!(s.micro.f1, 0.0);

    // Entities do not run across sentences: gold sentence 1 ends in B-PER and
    // sentence 2 starts with I-PER: two entities. Pred merges nothing either,
    // but tags the second as LOC. Gold: PER(1..2), PER(3..4); pred: PER(1..2),
    // LOC(3..4). TP = 1, P = R = F1 = 1/2.
    let gold = sents(&[&["O", "B-PER"], &["I-PER", "O"]]);
    let pred = sents(&[&["O", "B-PER"], &["I-LOC", "O"]]);
    let s = entity_scores(&gold, &pred).unwrap();
    assert_eq!(
        (s.micro.correct, s.micro.predicted, s.micro.support),
        (1, 2, 2)
    );
    assert!(close(s.micro.f1, 0.5));

    // Entity at the end of the sentence, found: P = R = F1 = 1.
    let gold = sents(&[&["O", "B-LOC", "I-LOC"]]);
    let s = entity_scores(&gold, &gold).unwrap();
    assert_eq!(
        (s.micro.precision, s.micro.recall, s.micro.f1),
        (1.0, 1.0, 1.0)
    );

    // No predicted entities: P = 0 (0/0 -> 0), R = 0, F1 = 0.
    let pred = sents(&[&["O", "O", "O"]]);
    let s = entity_scores(&gold, &pred).unwrap();
    assert_eq!(
        (s.micro.precision, s.micro.recall, s.micro.f1),
        (0.0, 0.0, 0.0)
    );

    // Length mismatches are errors.
    let short = sents(&[&["O", "O"]]);
    assert!(matches!(
        entity_scores(&gold, &short),
        Err(MetricError::LengthMismatch { .. })
    ));
    assert!(entity_scores(&gold, &sents(&[])).is_err());
}

#[test]
fn accuracy_hand_made() {
    assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 4]).unwrap(), 0.75);
    assert_eq!(accuracy::<u8>(&[], &[]).unwrap(), 0.0);
    assert!(accuracy(&[1, 2], &[1]).is_err());
    // Nested: 3 of 5 tokens right.
    let gold = vec![vec!["NOUN", "VERB"], vec!["DET", "NOUN", "PUNCT"]];
    let pred = vec![vec!["NOUN", "NOUN"], vec!["DET", "ADJ", "PUNCT"]];
    assert!(close(accuracy_nested(&gold, &pred).unwrap(), 0.6));
}

#[test]
fn attachment_scores_hand_made() {
    // Word 1: head and rel right; word 2 (root): right; word 3: head wrong,
    // rel right (counts for neither); word 4: head right, rel wrong (UAS only).
    // UAS = 3/4 = 75 %, LAS = 2/4 = 50 %.
    let gold_heads = [2usize, 0, 2, 3];
    let pred_heads = [2usize, 0, 3, 3];
    let gold_rels = ["nsubj", "root", "obj", "punct"];
    let pred_rels = ["nsubj", "root", "obj", "det"];
    let s = attachment_scores(&gold_heads, &gold_rels, &pred_heads, &pred_rels).unwrap();
    assert_eq!((s.uas, s.las, s.total), (75.0, 50.0, 4));

    // Accumulated over two batches: + 1 word all wrong -> UAS 60, LAS 40.
    let mut c = AttachmentCounter::new();
    c.add(&gold_heads, &gold_rels, &pred_heads, &pred_rels)
        .unwrap();
    c.add(&[1usize], &["obj"], &[0usize], &["root"]).unwrap();
    let s = c.scores();
    assert!(close(s.uas, 60.0) && close(s.las, 40.0));
    assert_eq!(AttachmentCounter::new().scores().uas, 0.0);
    assert!(attachment_scores(&[1usize], &[0usize], &[1usize, 2], &[0usize]).is_err());
}

/// A byte-order mark at the start of a file (Windows editors write one) is
/// accepted by every reader; FIFOs and directories are refused by type.
#[test]
fn a_leading_bom_is_accepted_and_non_files_are_refused_by_type() {
    use pixel_tasks::{conllu, glue, ner, squad};
    let p = Path::new("bom");
    let c = conllu::parse_conllu(
        "\u{feff}# text = A\n1\tA\ta\tDET\t_\t_\t0\troot\t_\t_\n\n",
        p,
    )
    .unwrap();
    assert_eq!(c[0].forms(), vec!["A"]);
    let n = ner::parse_ner("\u{feff}Ada B-PER\n\n", p, &ner::NER_LABELS).unwrap();
    assert_eq!(n[0].tokens, vec!["Ada"]);
    let g = glue::parse_glue_single("\u{feff}sentence\tlabel\nok\t1\n", p, &["0", "1"]).unwrap();
    assert_eq!(g.len(), 1);
    assert!(squad::parse_squad("\u{feff}{\"data\": []}", p).is_ok());
    let dir = std::env::temp_dir();
    let err = conllu::read_conllu(&dir).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains("is a directory, not a regular file"),
        "{text}"
    );
}
