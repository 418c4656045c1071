//! Tables for the CLI's text output (comfy-table): columns sized to their
//! contents (wide characters such as Chinese names counted as two), no
//! borders, two spaces between columns, numbers right-aligned.

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};

/// A table with this header; the columns numbered in `right` (from 0) are
/// right-aligned.
pub fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for (i, c) in t.column_iter_mut().enumerate() {
        c.set_padding((0, 2));
        if right.contains(&i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// Prints a table, each line without trailing spaces.
pub fn print(t: &Table) {
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_wide_characters_and_numbers_align_right() {
        let mut t = table(&["ORG", "NAME", "AMOUNT"], &[2]);
        t.add_row(["state-bank", "国家开发银行", "1.00"]);
        t.add_row(["county", "County unit", "1000000.00"]);
        let lines: Vec<String> = t.lines().map(|l| l.trim_end().to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        // The amounts end in the same display column.
        let width = |s: &str| {
            s.chars()
                .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
                .sum::<usize>()
        };
        assert_eq!(width(&lines[1]), width(&lines[2]), "{lines:?}");
        assert!(lines[1].ends_with(" 1.00"), "{lines:?}");
    }
}
