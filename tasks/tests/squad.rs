//! SQuAD v1.1 reader and the official metric, on hand-computed cases.

use std::collections::BTreeMap;
use std::path::Path;

use pixel_tasks::squad::{
    exact_match, f1_score, normalize_answer, parse_squad, squad_scores, SquadError,
};

fn file(qas: &str, context: &str) -> String {
    format!(
        r#"{{"data": [{{"title": "t", "paragraphs": [{{"context": {context:?}, "qas": [{qas}]}}]}}]}}"#
    )
}

#[test]
fn reads_questions_and_skips_unanswered_ones_with_a_reason() {
    let qas = r#"{"id": "q1", "question": "Who?", "answers": [{"text": "Amos", "answer_start": 9}]},
                 {"id": "q2", "question": "Why?", "answers": []}"#;
    let f = parse_squad(&file(qas, "Brothers Amos and Wilfrid"), Path::new("x.json")).unwrap();
    assert_eq!(f.questions.len(), 1);
    assert_eq!(f.questions[0].id, "q1");
    assert_eq!(f.questions[0].answers[0].answer_start, 9);
    assert_eq!(
        f.skipped,
        vec![("q2".to_string(), "no gold answer".to_string())]
    );
}

#[test]
fn answer_start_counts_characters_not_bytes() {
    let qas = r#"{"id": "q", "question": "?", "answers": [{"text": "zoo", "answer_start": 4}]}"#;
    let f = parse_squad(&file(qas, "één zoo"), Path::new("x.json")).unwrap();
    assert_eq!(f.questions[0].answers[0].text, "zoo");
}

fn error_of(qas: &str) -> String {
    let e = parse_squad(
        &file(qas, "Brothers Amos and Wilfrid"),
        Path::new("bad.json"),
    )
    .unwrap_err();
    assert!(matches!(e, SquadError::Question { .. }), "{e}");
    e.to_string()
}

#[test]
fn malformed_questions_are_errors_naming_the_file_and_the_question() {
    let e = error_of(
        r#"{"id": "q7", "question": "?", "answers": [{"text": "Amos", "answer_start": 99}]}"#,
    );
    assert!(
        e.contains("bad.json") && e.contains("q7") && e.contains("outside the context"),
        "{e}"
    );
    let e = error_of(
        r#"{"id": "q8", "question": "?", "answers": [{"text": "Amos", "answer_start": 0}]}"#,
    );
    assert!(e.contains("q8") && e.contains("does not match"), "{e}");
    let e = error_of(r#"{"id": "q9", "answers": []}"#);
    assert!(e.contains("q9") && e.contains("\"question\""), "{e}");
    let e = error_of(r#"{"id": "q10", "question": "?", "answers": [{"answer_start": 0}]}"#);
    assert!(e.contains("q10") && e.contains("\"text\""), "{e}");
    let e = error_of(r#"{"question": "?", "answers": []}"#);
    assert!(e.contains("qas[0]") && e.contains("\"id\""), "{e}");
    let e = parse_squad("{\"data\": [", Path::new("bad.json")).unwrap_err();
    assert!(e.to_string().contains("bad.json"), "{e}");
}

#[test]
fn normalization_follows_the_official_script() {
    assert_eq!(normalize_answer("The  Cat, a dog!"), "cat dog");
    assert_eq!(normalize_answer("Theater an-d"), "theater and");
    assert_eq!(normalize_answer("  A  "), "");
    assert_eq!(normalize_answer("1.3 square feet"), "13 square feet");
}

#[test]
fn exact_match_and_f1_by_hand() {
    assert_eq!(exact_match("the Eiffel Tower", "Eiffel tower."), 1.0);
    assert_eq!(exact_match("Eiffel", "Eiffel Tower"), 0.0);
    // pred {eiffel}, gold {eiffel, tower}: P 1, R 1/2, F1 2/3.
    assert!((f1_score("Eiffel", "Eiffel Tower") - 2.0 / 3.0).abs() < 1e-12);
    // pred {a1 b b}, gold {b b b c}: common 2 (b twice); P 2/3, R 1/2, F1 4/7.
    assert!((f1_score("a1 b b", "b b b c") - 4.0 / 7.0).abs() < 1e-12);
    assert_eq!(f1_score("", ""), 0.0);
    assert_eq!(f1_score("x", "y"), 0.0);
}

#[test]
fn scores_take_the_best_gold_answer_and_count_unanswered_questions_as_zero() {
    let qas = r#"{"id": "a", "question": "?", "answers": [{"text": "Amos and Wilfrid", "answer_start": 9},
                                                       {"text": "Amos", "answer_start": 9}]},
                 {"id": "b", "question": "?", "answers": [{"text": "Brothers", "answer_start": 0}]},
                 {"id": "c", "question": "?", "answers": [{"text": "Wilfrid", "answer_start": 18}]}"#;
    let f = parse_squad(&file(qas, "Brothers Amos and Wilfrid"), Path::new("x.json")).unwrap();
    let mut preds = BTreeMap::new();
    preds.insert("a".to_string(), "Amos".to_string()); // EM 1, F1 1 (second gold)
    preds.insert("b".to_string(), "Brothers Amos".to_string()); // EM 0, F1 2/3
    let s = squad_scores(&f.questions, &preds); // "c" unanswered
    assert_eq!(s.unanswered, 1);
    assert!((s.exact_match - 100.0 / 3.0).abs() < 1e-9);
    assert!((s.f1 - 100.0 * (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-9);
}
