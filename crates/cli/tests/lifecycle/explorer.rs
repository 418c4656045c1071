//! The explorer (ADR 021) in a real headless browser: Debian's Chromium,
//! driven through ChromeDriver by fantoccini, on the demo's live
//! consortium. Pages load, navigation and search work, the figures on the
//! pages are the ones `aidledger audit report` prints, both languages
//! render, a hostile title stays text, and the browser's console stays
//! clean. Screenshots go to `target/explorer-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is here; without it the test says so and skips,
/// unless `AIDLEDGER_REQUIRE_BROWSER` is set (as `scripts/test.sh`, which
/// installs it, sets it).
pub fn browser_available() -> bool {
    let here = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !here {
        assert!(
            std::env::var_os("AIDLEDGER_REQUIRE_BROWSER").is_none(),
            "AIDLEDGER_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "NOTICE: {CHROMIUM} or {CHROMEDRIVER} is absent; skipping the explorer's browser \
             test (scripts/test.sh installs them)"
        );
    }
    here
}

/// ChromeDriver on a free loopback port, in a process group of its own so
/// that the browser it starts ends with it.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(log: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = super::common::consortium::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let d = Driver { child, port };
        super::common::consortium::wait_until("chromedriver to listen", 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// ChromeDriver's browser log (`goog:loggingPrefs`), which W3C WebDriver
/// does not define: console messages and failed loads since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

struct Browser {
    c: Client,
    base: String,
    shots: PathBuf,
    /// Every console entry seen, with the page it was seen on.
    console: Vec<(String, Value)>,
}

impl Browser {
    async fn open(port: u16, base: &str, profile: &Path, shots: PathBuf) -> Browser {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1600",
                    "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            c,
            base: base.to_string(),
            shots,
            console: Vec::new(),
        }
    }

    /// Reads the browser's log into `console`.
    async fn drain_log(&mut self, page: &str) {
        let v = self.c.issue_cmd(BrowserLog).await.expect("the browser log");
        for e in v.as_array().cloned().unwrap_or_default() {
            self.console.push((page.to_string(), e));
        }
    }

    /// Waits until the app has rendered `page` (its `main` says so).
    async fn wait_page(&mut self, page: &str) {
        let sel = format!("main#view[data-page=\"{page}\"][data-loaded=\"true\"]");
        let found = self
            .c
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(&sel))
            .await;
        if found.is_err() {
            let shown = self
                .c
                .execute(
                    "const m = document.querySelector('main#view'); return m ? [m.dataset.page, m.dataset.loaded, m.innerText.slice(0, 400)] : null;",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            self.shot(&format!("failed-{page}")).await;
            self.drain_log(page).await;
            panic!(
                "the explorer did not render {page}: main shows {shown}; console: {:?}",
                self.console
            );
        }
        self.drain_log(page).await;
    }

    /// Marks the shown page stale, so that a wait cannot mistake it for
    /// the next one (the app marks each page loaded when it is).
    async fn stale(&self) {
        let _ = self
            .c
            .execute(
                "const m = document.getElementById('view'); if (m) m.dataset.loaded = 'false';",
                vec![],
            )
            .await;
    }

    async fn visit(&mut self, fragment: &str, page: &str) {
        let here = self
            .c
            .execute("return location.hash", vec![])
            .await
            .unwrap_or(Value::Null);
        self.stale().await;
        if here.as_str() == Some(&format!("#{fragment}")) {
            // The same fragment fires no navigation: load the page again.
            self.c.refresh().await.expect("reload");
        } else {
            let url = format!("{}/#{}", self.base, fragment);
            self.c.goto(&url).await.expect("navigate");
        }
        self.wait_page(page).await;
    }

    async fn shot(&self, name: &str) {
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{name}.png")), png);
        }
    }

    /// The `data-minor` of the first element `css` selects.
    async fn figure(&self, css: &str) -> u64 {
        let e = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"));
        let v = e
            .attr("data-minor")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{css} has no data-minor"));
        v.parse()
            .unwrap_or_else(|_| panic!("{css}: data-minor {v} is not an integer"))
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} to click: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn search(&mut self, what: &str, page: &str) {
        let input = self
            .c
            .find(Locator::Id("search"))
            .await
            .expect("the search box");
        input.clear().await.unwrap();
        input.send_keys(what).await.unwrap();
        self.stale().await;
        self.c
            .execute(
                "document.getElementById('search-form').requestSubmit();",
                vec![],
            )
            .await
            .unwrap();
        self.wait_page(page).await;
    }
}

/// `1234567` as `1,234,567`: how both locales group the integer part.
fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// What the test compares the pages with.
pub struct Expected {
    /// `aidledger --output json audit report` of the node under test.
    pub report: Value,
    /// `aidledger --output json audit report --region R` for one region.
    pub regional: Value,
    /// A program created with a hostile title, and that title.
    pub hostile: Option<(String, String)>,
}

pub fn explorer_agrees_with_the_audit_report(api: &str, expected: &Expected) {
    let work = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/explorer-screenshots");
    let driver = Driver::start(&work.path().join("chromedriver.log"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let mut b = Browser::open(driver.port, api, &work.path().join("profile"), shots).await;
        let outcome = tokio::time::timeout(Duration::from_secs(240), walk(&mut b, expected)).await;
        let _ = b.c.clone().close().await;
        outcome
    });
    drop(driver);
    result.expect("the explorer walk took over 240 s");
}

async fn walk(b: &mut Browser, x: &Expected) {
    let report = &x.report;

    // The overview: consortium, this node, the last blocks.
    b.visit("/", "overview").await;
    b.shot("overview-en").await;
    let lang =
        b.c.execute("return document.documentElement.lang", vec![])
            .await
            .unwrap();
    assert_eq!(lang, "en", "an English browser gets English");

    // Every program's balances are the report's.
    b.click("[data-nav=\"programs\"]").await;
    b.wait_page("programs").await;
    b.shot("programs-en").await;
    let programs = report["programs"].as_array().unwrap();
    assert!(!programs.is_empty());
    for p in programs {
        let id = p["id"].as_str().unwrap();
        for f in [
            "deposited",
            "released",
            "settled",
            "available",
            "committed",
            "returned",
        ] {
            let css = format!("[data-figure=\"{f}\"][data-program=\"{id}\"]");
            assert_eq!(b.figure(&css).await, u(p, f), "programs list: {id} {f}");
        }
    }

    // Into the demo's program by its link: chart, flow, plans, releases.
    let main = programs
        .iter()
        .find(|p| u(p, "deposited") > 0)
        .expect("a program with money");
    let first = main["id"].as_str().unwrap();
    b.click(&format!("a[href=\"#/programs/{first}\"]")).await;
    b.wait_page("program").await;
    b.shot("program-en").await;
    for p in programs {
        let id = p["id"].as_str().unwrap();
        b.visit(&format!("/programs/{id}"), "program").await;
        for f in [
            "deposited",
            "available",
            "committed",
            "released",
            "settled",
            "returned",
        ] {
            let css = format!("main [data-figure=\"{f}\"][data-program=\"{id}\"]");
            assert_eq!(b.figure(&css).await, u(p, f), "program page: {id} {f}");
        }
        if u(p, "deposited") > 0 {
            let svgs = b.c.find_all(Locator::Css("main svg")).await.unwrap();
            assert!(svgs.len() >= 2, "{id}: a balance chart and a flow diagram");
        }
    }

    // The amounts are shown as money, with the program's decimals, not as
    // minor units (the check above reads the exact integers).
    let dep = u(main, "deposited");
    let decimals = main["decimals"].as_u64().unwrap() as u32;
    let grouped = group_thousands(dep / 10u64.pow(decimals));
    b.visit(&format!("/programs/{first}"), "program").await;
    let shown = b
        .text(&format!(
            "main [data-figure=\"deposited\"][data-program=\"{first}\"]"
        ))
        .await;
    assert!(
        shown.contains(&format!("{grouped}.{}", "0".repeat(decimals as usize))),
        "deposited {dep} shows as {shown:?}"
    );
    // No markup from a title anywhere on the list of programs either.
    b.visit("/programs", "programs").await;
    let injected =
        b.c.find_all(Locator::Css("body img, main script"))
            .await
            .unwrap();
    assert!(
        injected.is_empty(),
        "a title became markup on the programs list"
    );

    // The county report: totals as `audit report --region` prints them.
    let rg = &x.regional;
    let region = rg["region"].as_str().unwrap();
    b.visit("/regions", "regions").await;
    b.shot("regions-en").await;
    for row in report["regions"].as_array().unwrap() {
        let (r, c) = (
            row["region"].as_str().unwrap(),
            row["currency"].as_str().unwrap(),
        );
        if c.is_empty() {
            continue;
        }
        for f in ["deposited", "released", "settled"] {
            let css = format!("[data-figure=\"{f}\"][data-region=\"{r}\"][data-currency=\"{c}\"]");
            assert_eq!(b.figure(&css).await, u(row, f), "regions: {r} {c} {f}");
        }
    }
    b.visit(&format!("/regions/{region}"), "region").await;
    b.shot("region-en").await;
    let totals = rg["totals"].as_array().unwrap();
    assert!(!totals.is_empty(), "{rg}");
    for t in totals {
        let c = t["currency"].as_str().unwrap();
        for f in ["deposited", "released", "settled"] {
            let css = format!("[data-figure=\"total-{f}\"][data-currency=\"{c}\"]");
            assert_eq!(b.figure(&css).await, u(t, f), "region {region}: {c} {f}");
        }
        let css = format!("[data-figure=\"total-releases\"][data-currency=\"{c}\"]");
        assert_eq!(b.figure(&css).await, u(t, "releases"));
    }
    assert_eq!(
        b.figure("[data-figure=\"households-registered\"]").await,
        u(rg, "households_registered")
    );
    assert_eq!(
        b.figure("[data-figure=\"households-reached\"]").await,
        u(rg, "households_reached")
    );
    // The regions, as the explorer shows them, add up to what the
    // programs released (the province holds every program here).
    b.visit("/regions", "regions").await;
    let mut shown_released = 0u64;
    for e in
        b.c.find_all(Locator::Css("[data-figure=\"released\"][data-region]"))
            .await
            .unwrap()
    {
        shown_released += e
            .attr("data-minor")
            .await
            .unwrap()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    let released: u64 = programs.iter().map(|p| u(p, "released")).sum();
    assert_eq!(
        shown_released, released,
        "the regions add up to the programs"
    );

    // A household card: what it received is what the report says.
    let hh = &report["households"]["reached_list"][0];
    let hid = hh["id"].as_str().unwrap();
    b.visit(&format!("/households/{hid}"), "household").await;
    b.shot("household-en").await;
    let received: u64 = hh["received"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(b.figure("[data-figure=\"received-total\"]").await, received);
    let payments =
        b.c.find_all(Locator::Css("[data-figure=\"payment\"]"))
            .await
            .unwrap();
    assert_eq!(
        payments.len(),
        hh["releases"].as_array().unwrap().len(),
        "one row a payment"
    );

    // Applications and anomalies.
    b.click("[data-nav=\"applications\"]").await;
    b.wait_page("applications").await;
    b.shot("applications-en").await;
    b.click("main a[href^=\"#/applications/\"]").await;
    b.wait_page("application").await;
    b.shot("application-en").await;
    b.click("[data-nav=\"anomalies\"]").await;
    b.wait_page("anomalies").await;
    b.shot("anomalies-en").await;

    // A block from the overview's list, then search by height, program,
    // transaction and household.
    b.click("[data-nav=\"overview\"]").await;
    b.wait_page("overview").await;
    b.click("main a[href^=\"#/blocks/\"]").await;
    b.wait_page("block").await;
    b.shot("block-en").await;
    b.search("2", "block").await;
    let count =
        b.c.find(Locator::Css("main [data-figure=\"tx-count\"]"))
            .await
            .unwrap();
    assert_eq!(
        count.attr("data-height").await.unwrap().as_deref(),
        Some("2"),
        "the search for height 2 shows block 2"
    );
    b.search(first, "program").await;
    let tx = main["sources"]["deposited"]["txs"][0]
        .as_str()
        .unwrap()
        .to_string();
    b.search(&tx, "tx").await;
    b.search(hid, "household").await;

    // Chinese: the switch, the words, the amounts in the locale.
    b.click("[data-lang=\"zh-CN\"]").await;
    b.visit(&format!("/programs/{first}"), "program").await;
    let lang =
        b.c.execute("return document.documentElement.lang", vec![])
            .await
            .unwrap();
    assert_eq!(lang, "zh-CN");
    let nav = b.text("[data-nav=\"programs\"]").await;
    assert!(
        nav.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "nav in Chinese: {nav}"
    );
    b.shot("program-zh").await;
    let heading = b.text("main h2").await;
    assert!(
        heading
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "the page's sections are in Chinese: {heading}"
    );
    let shown = b
        .text(&format!(
            "main [data-figure=\"deposited\"][data-program=\"{first}\"]"
        ))
        .await;
    assert!(
        shown.contains('¥') && shown.contains(&grouped),
        "zh-CN money: {shown:?}"
    );
    for (frag, page) in [
        ("/", "overview"),
        ("/regions", "regions"),
        (&format!("/households/{hid}")[..], "household"),
    ] {
        b.visit(frag, page).await;
        b.shot(&format!("{page}-zh")).await;
    }
    // The choice is kept.
    b.c.refresh().await.unwrap();
    b.wait_page("household").await;
    let lang =
        b.c.execute("return document.documentElement.lang", vec![])
            .await
            .unwrap();
    assert_eq!(lang, "zh-CN", "the language choice survives a reload");
    b.click("[data-lang=\"en\"]").await;

    // A title written by a hostile signer is shown as text, never as markup.
    if let Some((id, title)) = &x.hostile {
        b.visit(&format!("/programs/{id}"), "program").await;
        b.shot("hostile-title").await;
        let page = b.text("main#view").await;
        assert!(
            page.contains(title.as_str()),
            "the title shows as text: {page}"
        );
        let injected =
            b.c.find_all(Locator::Css("main img, main script, main iframe"))
                .await
                .unwrap();
        assert!(injected.is_empty(), "the title became markup");
        let flag =
            b.c.execute("return window.__pwned === undefined", vec![])
                .await
                .unwrap();
        assert_eq!(flag, true, "the title ran code");
    }

    // An unknown household is a message, not a broken page.
    b.visit(&format!("/households/{}", "0".repeat(64)), "error")
        .await;
    let shown = b.text("main#view .problem").await;
    assert!(!shown.trim().is_empty(), "the problem is shown");

    // Nothing went wrong in the console on any page. (A 404 the app asked
    // for on purpose, the unknown household above, is the browser's
    // "Failed to load resource" line, which is allowed there only.)
    let bad: Vec<&(String, Value)> = b
        .console
        .iter()
        .filter(|(_, e)| {
            let level = e["level"].as_str().unwrap_or_default();
            let msg = e["message"].as_str().unwrap_or_default();
            (level == "SEVERE" || level == "WARNING")
                && !(msg.contains("/v1/households/0000") && msg.contains("404"))
        })
        .collect();
    assert!(bad.is_empty(), "console errors: {bad:#?}");
}
