//! `plimsoll analyze FILE.csv`: feeds a recorded series through the same online detector that
//! `run` uses, sample by sample, and prints the verdict (DESIGN.md, "Verdict JSON").

use std::fs::File;
use std::io::{self, BufReader, Read};

use anyhow::{bail, Context, Result};
use plimsoll_analysis::{DetectorConfig, LeakDetector, LeakStatus, Verdict};
use plimsoll_http::verdict_json;

use crate::cli::AnalyzeArgs;
use crate::exit;
use crate::series::SeriesReader;
use crate::stdout::{outln, StdoutError};
use crate::units::{human_bytes, human_seconds};

pub(crate) fn run(args: &AnalyzeArgs) -> Result<u8> {
    // Quoted short and escaped: a file name can be 4 KiB long or hold escape sequences.
    let name = crate::bounded::excerpt(&args.file.display().to_string());
    let input: Box<dyn Read> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(
            File::open(&args.file).with_context(|| format!("cannot open series file '{name}'"))?,
        )
    };
    let mut reader = SeriesReader::new(BufReader::with_capacity(1 << 16, input))
        .with_context(|| format!("bad series file '{name}'"))?;
    let mut detector = LeakDetector::new(DetectorConfig::recommended());
    let warmup_s = args.warmup.map_or(0.0, |d| d.as_secs_f64());
    let budget = args.budget.map(|b| b.0);
    let mut first_t_s = None;
    let mut last_t_s = 0.0;
    // The first sample at or over the budget (seconds after the first sample) and the peak.
    let mut over_budget: Option<(f64, u64)> = None;
    while let Some(observation) = reader
        .next_observation()
        .with_context(|| format!("bad series file '{name}'"))?
    {
        let first = *first_t_s.get_or_insert(observation.t_s);
        last_t_s = observation.t_s;
        // The warm-up counts neither for the verdict nor as a budget breach (as in `soak`).
        if observation.t_s - first < warmup_s {
            continue;
        }
        if budget.is_some_and(|b| observation.rss_bytes >= b) {
            let (_, peak) = over_budget.get_or_insert((observation.t_s - first, 0));
            *peak = (*peak).max(observation.rss_bytes);
        }
        detector.push(&observation);
    }
    let status = detector.status();
    if first_t_s.is_none() {
        bail!("bad series file '{name}': no samples (the file has a header only)");
    }
    if status.samples == 0 {
        bail!(
            "series file '{name}': every sample falls within --warmup {} (the series spans {})",
            human_seconds(warmup_s),
            human_seconds(last_t_s - first_t_s.unwrap_or(last_t_s))
        );
    }
    let time_to_budget_s = budget.and_then(|b| detector.time_to_budget_s(b));
    // Over the budget is a failure whatever the trend.
    let code = match status.verdict {
        _ if over_budget.is_some() => exit::LEAK,
        Verdict::Leak => exit::LEAK,
        Verdict::NoLeak => exit::OK,
        Verdict::Inconclusive => exit::INCONCLUSIVE,
    };
    let printed = print(args, &name, &status, time_to_budget_s, over_budget);
    Ok(crate::stdout::verdict_code(code, printed)?)
}

/// The verdict, as JSON or for people.
fn print(
    args: &AnalyzeArgs,
    name: &str,
    status: &LeakStatus,
    time_to_budget_s: Option<f64>,
    over_budget: Option<(f64, u64)>,
) -> Result<(), StdoutError> {
    let budget = args.budget.map(|b| b.0);
    if args.json {
        let mut json = verdict_json(status, budget, time_to_budget_s);
        if let Some(object) = json.as_object_mut() {
            object.insert(
                "budget_exceeded".to_owned(),
                serde_json::Value::Bool(over_budget.is_some()),
            );
            object.insert(
                "budget_exceeded_after_s".to_owned(),
                serde_json::json!(over_budget.map(|(at, _)| at)),
            );
            // `verdict` is the leak verdict; `passed` is the whole answer (exit 0), as in
            // `soak --json`: a flat series over its budget is `no-leak` and not passed.
            object.insert(
                "passed".to_owned(),
                serde_json::Value::Bool(over_budget.is_none() && status.verdict == Verdict::NoLeak),
            );
        }
        outln!("{json}")
    } else {
        print_human(name, status, budget, time_to_budget_s, over_budget)
    }
}

fn print_human(
    name: &str,
    status: &LeakStatus,
    budget: Option<u64>,
    time_to_budget_s: Option<f64>,
    over_budget: Option<(f64, u64)>,
) -> Result<(), StdoutError> {
    let headline = match status.verdict {
        _ if over_budget.is_some() => "FAILED: over budget",
        Verdict::Leak => "LEAK",
        Verdict::NoLeak => "no leak",
        Verdict::Inconclusive => "inconclusive",
    };
    outln!("{name}: {headline}")?;
    outln!(
        "  samples        {} over {}",
        status.samples,
        human_seconds(status.observed_s)
    )?;
    outln!(
        "  growth         {}/min of the retained floor ({})",
        human_bytes(status.growth_bytes_per_s * 60.0),
        status.signal.as_str()
    )?;
    if let Some(t) = status.suspected_after_s {
        outln!("  suspected      after {}", human_seconds(t))?;
    }
    if let Some(t) = status.detected_after_s {
        outln!("  confirmed      after {}", human_seconds(t))?;
    }
    outln!("  confidence     {:.0} %", status.confidence * 100.0)?;
    outln!("  why            {}", status.reason)?;
    if let (Some(budget), Some((at, peak))) = (budget, over_budget) {
        outln!(
            "  budget         {} EXCEEDED after {} (peak rss {})",
            human_bytes(budget as f64),
            human_seconds(at),
            human_bytes(peak as f64)
        )?;
    } else if let Some(budget) = budget {
        match time_to_budget_s {
            Some(t) => outln!(
                "  budget         {} reached in about {}",
                human_bytes(budget as f64),
                human_seconds(t)
            )?,
            None => outln!(
                "  budget         {} (not on course to reach it)",
                human_bytes(budget as f64)
            )?,
        }
    }
    if let Some(more) = status.needs_more_s {
        outln!(
            "  needs          about {} more of observation to tell",
            human_seconds(more)
        )?;
    }
    Ok(())
}
