//! Plain-text tables of aligned columns: the validation summary and the benchmark table print through
//! the same renderer, so the two terminal tables line up the same way.
//!
//! ```
//! use upramp_validate::table;
//!
//! let rows = vec![
//!     vec!["stage".to_owned(), "target".to_owned()],
//!     vec!["0".to_owned(), "0%".to_owned()],
//! ];
//! assert_eq!(table::columns(&rows), "stage  target\n0      0%\n");
//! assert_eq!(
//!     table::columns_with_header_rule(&rows),
//!     "stage  target\n-----  ------\n0      0%\n"
//! );
//! ```

/// Rows as columns two spaces apart, each as wide as its widest cell (counted in characters), with no
/// trailing spaces; rows may have fewer cells than others.
pub fn columns(rows: &[Vec<String>]) -> String {
    render(rows, false)
}

/// [`columns`] with a rule of dashes under the first row, the header.
pub fn columns_with_header_rule(rows: &[Vec<String>]) -> String {
    render(rows, true)
}

fn render(rows: &[Vec<String>], header_rule: bool) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let mut text = cells.collect::<Vec<_>>().join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&line(
            &mut row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}")),
        ));
        if i == 0 && header_rule {
            out.push_str(&line(&mut widths.iter().map(|width| "-".repeat(*width))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[&str]]) -> Vec<Vec<String>> {
        cells
            .iter()
            .map(|row| row.iter().map(|c| (*c).to_owned()).collect())
            .collect()
    }

    #[test]
    fn widths_count_characters_and_short_rows_are_fine() {
        let table = rows(&[&["name", "p99"], &["µs-häufig", "1"], &["x"]]);
        assert_eq!(
            columns_with_header_rule(&table),
            "name       p99\n---------  ---\nµs-häufig  1\nx\n"
        );
    }

    #[test]
    fn no_rows_render_nothing() {
        assert_eq!(columns(&[]), "");
        assert_eq!(columns_with_header_rule(&[]), "");
    }
}
