//! The explorer (ADR 021) in a real headless browser: Debian's Chromium,
//! driven through ChromeDriver by fantoccini, on the demo's live
//! consortium. Pages load, navigation and search work, the figures on the
//! pages are the ones `aidledger audit report` prints, both languages
//! render, a hostile title stays text, a household's payment proof
//! downloads and `aidledger proof verify` checks it offline, its printable
//! receipt shows the proof's receipt code and QR image, and the browser's
//! console stays clean. Screenshots go to `target/explorer-screenshots/`.

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
    /// The consortium's `genesis.json` (a node's home holds it), which
    /// `aidledger proof verify` checks the downloaded proofs against.
    pub genesis: PathBuf,
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
        let outcome = tokio::time::timeout(
            Duration::from_secs(240),
            walk(&mut b, expected, work.path()),
        )
        .await;
        let _ = b.c.clone().close().await;
        outcome
    });
    drop(driver);
    result.expect("the explorer walk took over 240 s");
}

async fn walk(b: &mut Browser, x: &Expected, work: &Path) {
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

    // A household's payment proofs: the card's link downloads the node's
    // proof, the CLI checks it offline, and the receipt shows its code.
    let entitled = entitled_household(&b.base, report);
    if entitled.id != hid {
        b.visit(&format!("/households/{}", entitled.id), "household")
            .await;
    }
    let receipt = proofs_check_out(b, x, &entitled, work).await;
    b.shot("household-receipt-en").await;

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
    // The receipt in Chinese.
    b.visit(&format!("/households/{}", entitled.id), "household")
        .await;
    open_receipt(b, &receipt).await;
    let heading = b
        .text(&format!("[data-receipt=\"{}\"] h3", receipt.release))
        .await;
    assert!(
        heading
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "the receipt is in Chinese: {heading}"
    );
    b.shot("household-receipt-zh").await;
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

/// A household the demo paid subsidies to, and those payments (its
/// trace's releases whose source is an entitlement).
struct Entitled {
    id: String,
    releases: Vec<Value>,
}

fn entitled_household(api: &str, report: &Value) -> Entitled {
    for hh in report["households"]["reached_list"].as_array().unwrap() {
        let id = hh["id"].as_str().unwrap();
        let trace = super::get(api, &format!("/v1/households/{id}/trace"));
        let releases: Vec<Value> = trace["releases"]
            .as_array()
            .unwrap_or_else(|| panic!("a trace's releases: {trace}"))
            .iter()
            .filter(|r| r["source"]["entitlement"]["period"].is_u64())
            .cloned()
            .collect();
        if !releases.is_empty() {
            return Entitled {
                id: id.to_string(),
                releases,
            };
        }
    }
    panic!("no household received a subsidy payment: {report}");
}

/// An id from JSON, a number or a string, as text.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `encodeURIComponent`, which the explorer builds its query strings with.
fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query naming one subsidy payment of `hid`, as the explorer writes it.
fn proof_query(hid: &str, release: &Value) -> String {
    let ent = &release["source"]["entitlement"];
    format!(
        "household={}&program={}&period={}&entitlement={}&release={}",
        encode_component(hid),
        encode_component(release["program"].as_str().unwrap()),
        ent["period"].as_u64().unwrap(),
        encode_component(ent["entitlement"].as_str().unwrap()),
        text_of(&release["id"]),
    )
}

/// A GET to the node, as anyone without a browser would do it: the body.
fn download(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The code the downloaded proof's receipt must show.
struct Receipt {
    release: String,
    code: String,
    amount: u64,
}

/// The proof section of the household card shown: a link a payment, the
/// proof behind the first link checked offline by the CLI (and against its
/// receipt code, and a wrong one refused), then its receipt opened.
async fn proofs_check_out(b: &mut Browser, x: &Expected, hh: &Entitled, work: &Path) -> Receipt {
    let section =
        b.c.find(Locator::Css("main section[data-section=\"proof\"]"))
            .await
            .expect("the card's payment proofs");
    assert!(
        section.is_displayed().await.unwrap(),
        "the payment proofs are shown"
    );
    let links =
        b.c.find_all(Locator::Css("main [data-proof-download]"))
            .await
            .unwrap();
    assert_eq!(
        links.len(),
        hh.releases.len(),
        "a proof for every subsidy payment of {}",
        hh.id
    );
    let mut first: Option<(String, String)> = None;
    for l in &links {
        let rid = l.attr("data-proof-download").await.unwrap().unwrap();
        let release = hh
            .releases
            .iter()
            .find(|r| text_of(&r["id"]) == rid)
            .unwrap_or_else(|| panic!("a proof link for release {rid}, not a subsidy payment"));
        let href = l.attr("href").await.unwrap().unwrap();
        assert_eq!(
            href,
            format!("/v1/proofs/payment?{}", proof_query(&hh.id, release)),
            "release {rid}'s proof link"
        );
        let ent = &release["source"]["entitlement"];
        assert_eq!(
            l.attr("download").await.unwrap().as_deref(),
            Some(
                &format!(
                    "payment-proof-{}-{}-{}.json",
                    release["program"].as_str().unwrap(),
                    ent["period"].as_u64().unwrap(),
                    &hh.id[..8]
                )[..]
            ),
            "release {rid}'s proof file name"
        );
        if first.is_none() {
            first = Some((rid, href));
        }
    }
    let (rid, href) = first.expect("at least one proof link");

    // The proof, downloaded as the link would, checked with no node.
    let text = download(&format!("{}{href}", b.base));
    let proof: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the proof is not JSON ({e}): {text}"));
    let summary = &proof["summary"];
    assert_eq!(summary["household"].as_str(), Some(&hh.id[..]), "{proof}");
    assert_eq!(text_of(&summary["release"]), rid, "{proof}");
    let code = proof["receipt_code"]
        .as_str()
        .unwrap_or_else(|| panic!("a receipt code in {proof}"))
        .to_string();
    assert!(!code.is_empty());
    let amount: u64 = text_of(&summary["amount"])
        .parse()
        .unwrap_or_else(|_| panic!("the proof's amount: {proof}"));
    let file = work.join(format!("payment-proof-{rid}.json"));
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let g = x.genesis.to_str().unwrap();
    let shown = |out: &std::process::Output| {
        format!(
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = super::run(&["proof", "verify", f, "--genesis", g]);
    assert!(out.status.success(), "the proof checks: {}", shown(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&hh.id),
        "the receipt names the household: {}",
        shown(&out)
    );
    assert!(
        stdout.contains(&code),
        "the receipt prints its code: {}",
        shown(&out)
    );
    let out = super::run(&["proof", "verify", f, "--genesis", g, "--receipt", &code]);
    assert!(
        out.status.success(),
        "the proof matches its receipt code: {}",
        shown(&out)
    );
    let out = super::run(&["--output", "json", "proof", "verify", f, "--genesis", g]);
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(
        super::last_json(&out)["receipt_code"].as_str(),
        Some(&code[..]),
        "the JSON answer's receipt code"
    );
    let wrong = wrong_code(&code);
    let out = super::run(&["proof", "verify", f, "--genesis", g, "--receipt", &wrong]);
    assert!(
        !out.status.success(),
        "a wrong receipt code ({wrong} for {code}) is refused: {}",
        shown(&out)
    );

    // The CLI fetches the same proof, checks it against the genesis before
    // it writes it, and a resent request writes the same file again.
    let release = hh
        .releases
        .iter()
        .find(|r| text_of(&r["id"]) == rid)
        .unwrap();
    let ent = &release["source"]["entitlement"];
    let period = ent["period"].as_u64().unwrap().to_string();
    let cli_file = work.join("cli-proof.json");
    let args = [
        "--node",
        &b.base,
        "proof",
        "payment",
        "--household",
        &hh.id,
        "--program",
        release["program"].as_str().unwrap(),
        "--period",
        &period,
        "--entitlement",
        ent["entitlement"].as_str().unwrap(),
        "--genesis",
        g,
        "--out",
        cli_file.to_str().unwrap(),
    ];
    for _ in 0..2 {
        let out = super::run(&args);
        assert!(out.status.success(), "proof payment: {}", shown(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&code),
            "proof payment prints the receipt code: {}",
            shown(&out)
        );
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&cli_file).unwrap()).unwrap();
        assert_eq!(written, proof, "the CLI writes the node's proof");
    }
    // A payment never made: a clear refusal, and no file.
    let none = work.join("none.json");
    let mut bad = args;
    bad[9] = "999999";
    bad[15] = none.to_str().unwrap();
    let out = super::run(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing for period 999999"),
        "{}",
        shown(&out)
    );
    assert!(!none.exists());

    // The printable receipt: the proof's code, amount and QR image.
    let receipt = Receipt {
        release: rid,
        code,
        amount,
    };
    open_receipt(b, &receipt).await;
    let qr =
        b.c.find(Locator::Css(&format!(
            "[data-receipt=\"{}\"] img[data-qr]",
            receipt.release
        )))
        .await
        .unwrap();
    let src = qr.attr("src").await.unwrap().unwrap();
    let query = href.split_once('?').unwrap().1;
    assert_eq!(
        src,
        format!("/v1/proofs/payment/qr.svg?{query}"),
        "the QR image is the node's for the same payment"
    );
    receipt
}

/// A receipt code with its last letter or digit changed (to one that no
/// reading of the code could take for it).
fn wrong_code(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let i = chars
        .iter()
        .rposition(char::is_ascii_alphanumeric)
        .unwrap_or_else(|| panic!("a receipt code with a letter or digit: {code}"));
    chars[i] = match chars[i] {
        '9' => '0',
        'z' => 'a',
        'Z' => 'A',
        c => (c as u8 + 1) as char,
    };
    chars.into_iter().collect()
}

/// Opens the receipt of `r`'s payment on the shown household card, and
/// checks it shows the proof's code and amount and that its QR image
/// loaded.
async fn open_receipt(b: &mut Browser, r: &Receipt) {
    b.click(&format!("[data-proof-receipt=\"{}\"]", r.release))
        .await;
    let card = format!("[data-receipt=\"{}\"]", r.release);
    if b.c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&card))
        .await
        .is_err()
    {
        b.shot("failed-receipt").await;
        b.drain_log("household-receipt").await;
        let shown = b.text("main section[data-section=\"proof\"]").await;
        panic!(
            "no receipt for release {}: the section shows {shown}; console: {:?}",
            r.release, b.console
        );
    }
    let code = b.text(&format!("{card} [data-receipt-code]")).await;
    assert_eq!(code.trim(), r.code, "the receipt shows the proof's code");
    assert_eq!(
        b.figure(&format!("{card} [data-figure=\"receipt-amount\"]"))
            .await,
        r.amount,
        "the receipt's amount is the proof's"
    );
    let script = format!(
        "const i = document.querySelector('{card} img[data-qr]'); \
         if (!i) return 'no image'; \
         i.scrollIntoView({{ block: 'center' }}); \
         return i.complete ? i.naturalWidth : 'loading';"
    );
    let mut state = Value::Null;
    for _ in 0..100 {
        state = b.c.execute(&script, vec![]).await.unwrap();
        if state.as_u64().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.drain_log("household-receipt").await;
    assert!(
        state.as_u64().is_some_and(|w| w > 0),
        "the receipt's QR image loaded (naturalWidth {state}); console: {:?}",
        b.console
    );
}
