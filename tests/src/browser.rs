//! A real browser for the `--html` test: Debian's headless `chromium`, driven through the
//! DevTools protocol over `--remote-debugging-pipe` (fd 3 in, fd 4 out, messages ended by a
//! NUL byte). It opens a page and reports what the page did: its console errors, every
//! request it made, values of expressions evaluated in it, and a PNG screenshot.
//!
//! Chromium's own start-up talk (dbus, GPU) goes to its stderr, which is not read: only the
//! page's events count.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(30);

/// The chromium binary (`cargo xtask test` installs Debian's package when it is missing).
pub fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(
        Path::new(path).exists(),
        "{path} is missing: `cargo xtask test` installs it (apt-get install chromium)"
    );
    path
}

/// What a page did while it loaded.
#[derive(Debug, Default)]
pub struct PageVisit {
    /// Console errors, uncaught exceptions and error log entries (a Content-Security-Policy
    /// violation is one), as text.
    pub errors: Vec<String>,
    /// The URL of every request the page made, the page itself included.
    pub requests: Vec<String>,
    /// The values of the expressions asked for, in order.
    pub values: Vec<Value>,
    /// A screenshot of the page's first `height` pixels at `width`, as PNG.
    pub screenshot: Vec<u8>,
}

struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Events seen while waiting for replies.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

/// Opens `page` in headless chromium at `width` × `height`, waits for its load event, then
/// evaluates each of `expressions` in it and takes a screenshot.
pub fn visit(page: &Path, (width, height): (u32, u32), expressions: &[&str]) -> PageVisit {
    let mut browser = Browser::start();
    let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
    let target_id = target["targetId"]
        .as_str()
        .expect("a target id")
        .to_string();
    let attached = browser.call(
        None,
        "Target.attachToTarget",
        json!({"targetId": target_id, "flatten": true}),
    );
    let session = attached["sessionId"]
        .as_str()
        .expect("a session")
        .to_string();
    let session = Some(session.as_str());
    for domain in ["Page", "Runtime", "Log", "Network"] {
        browser.call(session, &format!("{domain}.enable"), json!({}));
    }
    browser.call(
        session,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    browser.events.clear();
    let url = format!("file://{}", page.display());
    browser.call(session, "Page.navigate", json!({"url": url}));
    browser.wait_for_event("Page.loadEventFired");
    let values = expressions
        .iter()
        .map(|expression| {
            let result = browser.call(
                session,
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            );
            assert!(
                result.get("exceptionDetails").is_none(),
                "{expression}: {result}"
            );
            result["result"]["value"].clone()
        })
        .collect();
    let shot = browser.call(session, "Page.captureScreenshot", json!({"format": "png"}));
    let screenshot = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("the screenshot is base64");
    let mut visit = PageVisit {
        values,
        screenshot,
        ..PageVisit::default()
    };
    for event in &browser.events {
        let params = &event["params"];
        match event["method"].as_str().unwrap_or("") {
            "Runtime.consoleAPICalled"
                if ["error", "assert"].contains(&params["type"].as_str().unwrap_or("")) =>
            {
                visit.errors.push(params["args"].to_string());
            }
            "Runtime.exceptionThrown" => visit.errors.push(params["exceptionDetails"].to_string()),
            "Log.entryAdded" if params["entry"]["level"] == "error" => {
                visit.errors.push(params["entry"]["text"].to_string());
            }
            "Network.requestWillBeSent" => {
                visit
                    .requests
                    .push(params["request"]["url"].as_str().unwrap_or("").to_string());
            }
            _ => {}
        }
    }
    visit
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (browser_reads, to_browser) = pipe();
        let (from_browser, browser_writes) = pipe();
        let (reads, writes) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                // Root cannot use chromium's sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2): the
        // pipe ends move above 10 first, so placing them on 3 and 4 cannot clobber each
        // other, and dup2's copies are not close-on-exec.
        unsafe {
            command.pre_exec(move || {
                let high_reads = libc::fcntl(reads, libc::F_DUPFD, 10);
                let high_writes = libc::fcntl(writes, libc::F_DUPFD, 10);
                if high_reads < 0
                    || high_writes < 0
                    || libc::dup2(high_reads, 3) < 0
                    || libc::dup2(high_writes, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("cannot start chromium");
        drop((browser_reads, browser_writes));
        let (send, receive) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(File::from(from_browser));
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        message.pop_if(|b| *b == 0);
                        let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                            continue;
                        };
                        if send.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to_browser: File::from(to_browser),
            from_browser: receive,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// Sends `method` (to `session`, or to the browser) and waits for its reply's result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("chromium closed its pipe");
        let reply = self.receive_until(method, |m| m["id"] == id);
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// Waits for the event `method`, unless it came already (before a reply).
    fn wait_for_event(&mut self, method: &str) {
        if self.events.iter().any(|e| e["method"] == method) {
            return;
        }
        let event = self.receive_until(method, |m| m["method"] == method);
        self.events.push(event);
    }

    /// The first message that satisfies `wanted`; events before it are kept.
    fn receive_until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(message) if wanted(&message) => return message,
                Ok(message) => {
                    if message.get("method").is_some() {
                        self.events.push(message);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("chromium: no {what} within {STEP:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited before {what}"),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 just made both, and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
