//! Each thread's CPU time and context switches over a run (Linux `/proc/self/task`), written
//! beside a run's trace: which thread did the work, and which ones were kept off a core
//! (involuntary switches) — whether a run waited for its own reader or for the machine.

use std::collections::BTreeMap;

/// Per thread: (name, CPU ms, voluntary switches, involuntary switches).
#[derive(Debug, Default)]
pub(crate) struct ThreadTimes(BTreeMap<u32, (String, f64, u64, u64)>);

impl ThreadTimes {
    /// The threads of this process now (none where `/proc` cannot be read).
    pub(crate) fn now() -> Self {
        let mut threads = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return ThreadTimes(threads);
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let path = task.path();
            let (Ok(stat), Ok(status)) = (
                std::fs::read_to_string(path.join("stat")),
                std::fs::read_to_string(path.join("status")),
            ) else {
                continue;
            };
            // `pid (comm) state ...`: the fields after the name's closing parenthesis; utime
            // and stime are the 14th and 15th of the whole line, in USER_HZ (100 on Linux).
            let Some((name, rest)) = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
            else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
                continue;
            };
            let switches = |key: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(key))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0)
            };
            threads.insert(
                tid,
                (
                    name.to_owned(),
                    (user + system) * 10.0,
                    switches("voluntary_ctxt_switches:"),
                    switches("nonvoluntary_ctxt_switches:"),
                ),
            );
        }
        ThreadTimes(threads)
    }

    /// What each thread did since `before`, as CSV (threads that did nothing left out).
    pub(crate) fn since_csv(&self, before: &ThreadTimes) -> String {
        let mut csv = String::from("tid,name,cpu_ms,voluntary_switches,involuntary_switches\n");
        for (tid, (name, cpu, voluntary, involuntary)) in &self.0 {
            let (cpu0, voluntary0, involuntary0) = before
                .0
                .get(tid)
                .map_or((0.0, 0, 0), |(_, cpu, v, i)| (*cpu, *v, *i));
            let cpu = cpu - cpu0;
            let (voluntary, involuntary) = (voluntary - voluntary0, involuntary - involuntary0);
            if cpu > 0.0 || voluntary + involuntary > 0 {
                csv.push_str(&format!(
                    "{tid},{name},{cpu:.0},{voluntary},{involuntary}\n"
                ));
            }
        }
        csv
    }
}
