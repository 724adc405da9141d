//! Majority vote over answers (the `aggregate` topology's aggregator): the most frequent
//! non-empty answer by normalized key; ties go to the answer seen first.

/// The winning answer ("" when every answer is empty).
pub fn majority(answers: &[String], key: impl Fn(&str) -> String) -> String {
    let mut counts: Vec<(String, usize, usize)> = Vec::new(); // (key, count, first index)
    for (i, a) in answers.iter().enumerate() {
        if a.trim().is_empty() {
            continue;
        }
        let k = key(a);
        match counts.iter_mut().find(|(kk, _, _)| *kk == k) {
            Some(e) => e.1 += 1,
            None => counts.push((k, 1, i)),
        }
    }
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(_, _, i)| answers[*i].clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_by_key_with_first_seen_ties() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            majority(&v(&["1/2", "0.5", "3"]), |s| s.replace("0.5", "1/2")),
            "1/2"
        );
        assert_eq!(majority(&v(&["a", "b"]), str::to_string), "a");
        assert_eq!(majority(&v(&["", " ", "b"]), str::to_string), "b");
        assert_eq!(majority(&v(&["", ""]), str::to_string), "");
    }
}
