//! A real browser over HTTP/3: headless Chromium loads the home page and the test reads, over
//! the DevTools protocol, which protocol carried the navigation. Skipped with a message when
//! Chromium is not installed, unless FOOBAR_REQUIRE_INTEROP=1 (as in CI) makes it required.
#![allow(clippy::unwrap_used)]

mod support;

use support::{
    Foobar,
    browser::{Browser, chromium},
    skip_without,
};

#[test]
fn chromium_loads_the_home_page_over_http3() {
    let Some(binary) = chromium() else {
        return skip_without(
            "chromium_loads_the_home_page_over_http3",
            "Chromium",
            "apt-get install chromium",
        );
    };
    let server = Foobar::setup().shipped_site().start();
    let spki = server.spki_sha256();
    let origin = format!("www.foobar.com:{}", server.https.port());
    let mut browser = Browser::start(binary, &origin, &spki);
    let url = format!("https://{origin}/");
    let page = browser.load(&url);
    drop(browser);
    assert_eq!(
        (
            page.href.as_str(),
            page.protocol.as_str(),
            page.title.as_str()
        ),
        (url.as_str(), "h3", "foobar.com"),
        "loaded, but not over HTTP/3"
    );
    // The edge logged the request as HTTP/3.
    let line = server.wait_for_log("protocol=HTTP/3.0");
    assert!(line.contains("path=/ "), "{line}");
}
