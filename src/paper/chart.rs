//! The accuracy chart of the results table: grouped bars (one group per task and the average,
//! one bar per row) with the 95% interval as a whisker, as a self-contained SVG.

use super::Table;

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of `table`'s rows (all topologies; a bar is labelled `topology/method` when the
/// table has more than one topology).
pub fn accuracy_svg(table: &Table) -> String {
    let groups: Vec<String> = table
        .tasks
        .iter()
        .cloned()
        .chain(std::iter::once("Avg".to_string()))
        .collect();
    let rows = &table.rows;
    let many_topologies = rows.iter().any(|r| r.topology != rows[0].topology);
    let label = |i: usize| {
        let r = &rows[i];
        if many_topologies {
            format!("{}/{}", r.topology, r.method)
        } else {
            r.method.clone()
        }
    };
    let bar_w = 12.0f64;
    let gap = 18.0;
    let group_w = bar_w * rows.len().max(1) as f64 + gap;
    let (left, top, plot_h) = (48.0, 20.0, 260.0);
    let legend_h = 18.0 * rows.len() as f64 + 10.0;
    let width = (left + group_w * groups.len() as f64 + 20.0).max(360.0);
    let height = top + plot_h + 40.0 + legend_h;
    let y = |v: f64| top + plot_h * (1.0 - v.clamp(0.0, 1.0));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for tick in 0..=5 {
        let v = tick as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\n",
            width - 10.0,
            y(v),
            y(v),
            left - 4.0,
            y(v) + 4.0,
            v * 100.0
        ));
    }
    for (gi, g) in groups.iter().enumerate() {
        let x0 = left + gap / 2.0 + group_w * gi as f64;
        for (ri, r) in rows.iter().enumerate() {
            let iv = if gi < table.tasks.len() {
                r.tasks.get(g).map(|a| a.accuracy)
            } else {
                r.average
            };
            let Some(iv) = iv else { continue };
            let x = x0 + bar_w * ri as f64;
            let color = PALETTE[ri % PALETTE.len()];
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} {}: {:.1}% [{:.1}, {:.1}]</title></rect>\n",
                y(iv.mean),
                bar_w - 1.0,
                (y(0.0) - y(iv.mean)).max(0.0),
                esc(&label(ri)),
                esc(g),
                iv.mean * 100.0,
                iv.low * 100.0,
                iv.high * 100.0
            ));
            let cx = x + (bar_w - 1.0) / 2.0;
            s.push_str(&format!(
                "<path d=\"M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}h5M{:.1} {:.1}h5\" stroke=\"#222\" fill=\"none\"/>\n",
                y(iv.low),
                y(iv.high),
                cx - 2.5,
                y(iv.low),
                cx - 2.5,
                y(iv.high)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x0 + bar_w * rows.len() as f64 / 2.0,
            top + plot_h + 16.0,
            esc(g)
        ));
    }
    for ri in 0..rows.len() {
        let ly = top + plot_h + 40.0 + 18.0 * ri as f64;
        s.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            ly - 10.0,
            PALETTE[ri % PALETTE.len()],
            left + 18.0,
            ly,
            esc(&label(ri))
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::stats::Interval;
    use crate::paper::{Row, RowCost};

    #[test]
    fn one_bar_and_whisker_per_row_and_group() {
        let iv = |m: f64| Interval {
            mean: m,
            low: m - 0.1,
            high: m + 0.1,
            level: 0.95,
            resamples: 10,
        };
        let row = |m: &str, v: f64| Row {
            topology: "reflect".into(),
            method: m.into(),
            tasks: [(
                "aqua".to_string(),
                crate::paper::table::TaskAccuracy {
                    accuracy: iv(v),
                    n: 10,
                    seeds: 1,
                },
            )]
            .into_iter()
            .collect(),
            average: Some(iv(v)),
            cost: RowCost::default(),
        };
        let t = Table {
            preset: "tiny".into(),
            tasks: vec!["aqua".into()],
            rows: vec![row("seed", 0.3), row("<maspo>", 0.5)],
            paired: vec![],
            cells: 2,
            missing: vec![],
        };
        let svg = accuracy_svg(&t);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<title>").count(), 4, "2 rows × (aqua + Avg)");
        assert_eq!(svg.matches("<path").count(), 4);
        assert!(svg.contains("&lt;maspo&gt;") && !svg.contains("<maspo>"));
        assert!(svg.contains("seed aqua: 30.0% [20.0, 40.0]"));
    }
}
