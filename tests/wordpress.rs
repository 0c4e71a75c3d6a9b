//! WordPress from Debian behind foobar, as nginx + PHP-FPM would serve it: PHP-FPM 8.2 and
//! MariaDB, the install form, logging in, a post published with an uploaded image, a comment,
//! pretty permalinks and wp-admin, over HTTP/1.1, HTTP/2 and HTTP/3; then Chromium loads the
//! front page and wp-admin over HTTP/3. Skipped with a message when PHP-FPM, WordPress or a
//! MySQL server is missing, unless FOOBAR_REQUIRE_INTEROP=1 (as in CI) makes them required.
#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::BTreeMap, path::Path};

use bytes::Bytes;
use http::{Request, StatusCode};
use support::{
    Foobar,
    php::{Fpm, fpm},
    skip_without,
    web::{ALL, Proto, Reply, fetch},
};

/// Debian's WordPress.
const WORDPRESS: &str = "/usr/share/wordpress";
/// The uploads folder Debian's package sets up (themes and plugins are links into WORDPRESS).
const CONTENT: &str = "/var/lib/wordpress/wp-content";
const PASSWORD: &str = "a long and unguessable test password";
/// A 1x1 PNG.
const PIXEL: [u8; 67] = [
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// WordPress's files, as Debian installs them, with a configuration of the test's own:
/// `wordpress/` holds the package's files (hard links, or copies across file systems) and its
/// `wp-config.php`; `content/wp-content` is a copy of Debian's content folder, its themes and
/// plugins links into the package.
fn install_files(dir: &Path, database: &support::Database) {
    let root = dir.join("wordpress");
    let linked = std::process::Command::new("cp")
        .args(["-al", WORDPRESS])
        .arg(&root)
        .status()
        .unwrap();
    if !linked.success() {
        let copied = std::process::Command::new("cp")
            .args(["-a", WORDPRESS])
            .arg(&root)
            .status()
            .unwrap();
        assert!(copied.success());
    }
    std::fs::create_dir_all(dir.join("content")).unwrap();
    let copied = std::process::Command::new("cp")
        .args(["-a", CONTENT])
        .arg(dir.join("content/wp-content"))
        .status()
        .unwrap();
    assert!(copied.success());
    // The package's own wp-config.php reads /etc/wordpress: this one is the test's.
    let config = root.join("wp-config.php");
    std::fs::remove_file(&config).unwrap();
    let url: url_parts::Url = url_parts::parse(&database.server);
    let keys: String = [
        "AUTH_KEY",
        "SECURE_AUTH_KEY",
        "LOGGED_IN_KEY",
        "NONCE_KEY",
        "AUTH_SALT",
        "SECURE_AUTH_SALT",
        "LOGGED_IN_SALT",
        "NONCE_SALT",
    ]
    .iter()
    .map(|key| format!("define('{key}', '{key} of the foobar test');\n"))
    .collect();
    std::fs::write(
        &config,
        format!(
            "<?php\n\
             define('DB_NAME', '{name}');\n\
             define('DB_USER', '{user}');\n\
             define('DB_PASSWORD', '{password}');\n\
             define('DB_HOST', '{host}');\n\
             define('DB_CHARSET', 'utf8mb4');\n\
             define('DB_COLLATE', '');\n\
             {keys}\
             $table_prefix = 'wp_';\n\
             define('WP_CONTENT_DIR', '{content}');\n\
             define('WP_HTTP_BLOCK_EXTERNAL', true);\n\
             define('AUTOMATIC_UPDATER_DISABLED', true);\n\
             define('DISABLE_WP_CRON', true);\n\
             define('FS_METHOD', 'direct');\n\
             define('ABSPATH', __DIR__ . '/');\n\
             require_once ABSPATH . 'wp-settings.php';\n",
            name = database.name,
            user = url.user,
            password = url.password,
            host = url.host,
            content = dir.join("content/wp-content").display(),
        ),
    )
    .unwrap();
}

/// The few parts of a mysql:// URL WordPress needs.
mod url_parts {
    pub struct Url {
        pub user: String,
        pub password: String,
        pub host: String,
    }

    pub fn parse(url: &str) -> Url {
        let rest = url.trim_start_matches("mysql://");
        let (credentials, rest) = rest.split_once('@').unwrap_or(("root", rest));
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        let host = rest.split('/').next().unwrap_or("127.0.0.1:3306");
        Url {
            user: user.to_string(),
            password: password.to_string(),
            host: host.to_string(),
        }
    }
}

/// A browser-like client: cookies kept, each request over the protocol asked for.
struct Client {
    server: std::net::SocketAddr,
    pem: Vec<u8>,
    /// `www.foobar.com:PORT`, as WordPress learns its address from the install.
    origin: String,
    cookies: BTreeMap<String, String>,
}

impl Client {
    async fn send(
        &mut self,
        proto: Proto,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.origin));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header("cookie", jar.join("; "));
        }
        let reply = fetch(proto, self.server, &self.pem, request.body(body).unwrap()).await;
        for cookie in reply.headers.get_all("set-cookie") {
            let text = cookie.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let gone = value == "deleted"
                || value.is_empty()
                || attributes
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01-jan-1970");
            if gone {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_string(), value.trim().to_string());
            }
        }
        reply
    }

    async fn get(&mut self, proto: Proto, path: &str) -> Reply {
        self.send(proto, "GET", path, &[], Bytes::new()).await
    }

    async fn form(&mut self, proto: Proto, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect();
        self.send(
            proto,
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(body.join("&")),
        )
        .await
    }
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of `name="FIELD" value="..."` in a form.
fn field(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The REST nonce an admin page hands the block editor.
fn rest_nonce(page: &str) -> String {
    let marker = "createNonceMiddleware( \"";
    let at = page.find(marker).expect("a REST nonce on the page");
    let rest = &page[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A path of `url` on this site.
fn path_of(url: &str, origin: &str) -> String {
    url.split(origin).nth(1).unwrap_or(url).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordpress_from_debian_installs_and_runs_over_every_protocol() {
    let test = "wordpress_from_debian_installs_and_runs_over_every_protocol";
    let Some(binary) = fpm() else {
        return skip_without(test, "PHP-FPM", "apt-get install php8.2-fpm php8.2-mysql");
    };
    if !Path::new(WORDPRESS).join("wp-settings.php").exists() {
        return skip_without(test, "WordPress", "apt-get install wordpress");
    }
    let Some(url) = support::mysql_url(test) else {
        return;
    };
    let database = support::Database::create(&url, "wp").await;
    let dir = tempfile::tempdir().unwrap();
    install_files(dir.path(), &database);
    let php = Fpm::start(binary, &dir.path().join("fpm"), 4);
    let server = Foobar::setup()
        .tables(&format!(
            "[[site]]\nnames = [\"www.foobar.com\"]\nroot = \"{wp}/wordpress\"\n\
             follow_symlinks = true\n\
             [[site.route]]\npath = \"/wp-content/\"\nfastcgi = \"{fpm}\"\nroot = \"{wp}/content\"\n\
             [[site.route]]\npath = \"/\"\nfastcgi = \"{fpm}\"\nmax_body_bytes = 16777216\n",
            wp = dir.path().display(),
            fpm = php.address(),
        ))
        .start();
    let origin = format!("www.foobar.com:{}", server.https.port());
    let mut client = Client {
        server: server.https,
        pem: server.certificate_pem(),
        origin: origin.clone(),
        cookies: BTreeMap::new(),
    };

    // The install form.
    let form = client.get(Proto::H2, "/wp-admin/install.php?step=1").await;
    assert_eq!(form.status, StatusCode::OK, "{}", text(&form));
    assert!(text(&form).contains("weblog_title"), "{}", text(&form));
    let installed = client
        .form(
            Proto::H2,
            "/wp-admin/install.php?step=2",
            &[
                ("weblog_title", "foobar's blog"),
                ("user_name", "admin"),
                ("admin_password", PASSWORD),
                ("admin_password2", PASSWORD),
                ("pw_weak", "on"),
                ("admin_email", "hostmaster@foobar.com"),
                ("blog_public", "0"),
                ("Submit", "Install WordPress"),
                ("language", ""),
            ],
        )
        .await;
    assert!(
        text(&installed).contains("Success!"),
        "{}",
        text(&installed)
    );

    // Pretty permalinks (set once).
    let mut permalinks_set = false;
    for proto in ALL {
        client.cookies.clear();
        // Log in.
        let login = client.get(proto, "/wp-login.php").await;
        assert_eq!(login.status, StatusCode::OK, "{proto:?}");
        let logged_in = client
            .form(
                proto,
                "/wp-login.php",
                &[
                    ("log", "admin"),
                    ("pwd", PASSWORD),
                    ("wp-submit", "Log In"),
                    ("redirect_to", &format!("https://{origin}/wp-admin/")),
                    ("testcookie", "1"),
                ],
            )
            .await;
        assert_eq!(
            logged_in.status,
            StatusCode::FOUND,
            "{proto:?}: {}",
            text(&logged_in)
        );
        assert!(
            client
                .cookies
                .keys()
                .any(|k| k.starts_with("wordpress_logged_in")),
            "{proto:?}: {:?}",
            client.cookies
        );
        // wp-admin: its folder is redirected to the form with a slash, then the dashboard.
        let bare = client.get(proto, "/wp-admin").await;
        assert_eq!(bare.status, StatusCode::PERMANENT_REDIRECT, "{proto:?}");
        assert_eq!(bare.header("location"), Some("/wp-admin/"));
        let dashboard = client.get(proto, "/wp-admin/").await;
        assert_eq!(dashboard.status, StatusCode::OK, "{proto:?}");
        assert!(text(&dashboard).contains("Dashboard"), "{proto:?}");
        if !permalinks_set {
            let page = text(&client.get(proto, "/wp-admin/options-permalink.php").await);
            let saved = client
                .form(
                    proto,
                    "/wp-admin/options-permalink.php",
                    &[
                        ("_wpnonce", &field(&page, "_wpnonce")),
                        ("_wp_http_referer", "/wp-admin/options-permalink.php"),
                        ("selection", "/%year%/%monthnum%/%postname%/"),
                        ("permalink_structure", "/%year%/%monthnum%/%postname%/"),
                        ("category_base", ""),
                        ("tag_base", ""),
                        ("submit", "Save Changes"),
                    ],
                )
                .await;
            assert_eq!(saved.status, StatusCode::FOUND, "{}", text(&saved));
            permalinks_set = true;
        }
        // An image, uploaded as the block editor does.
        let editor = text(&client.get(proto, "/wp-admin/post-new.php").await);
        let nonce = rest_nonce(&editor);
        let filename = format!("pixel-{proto:?}.png").to_lowercase();
        let disposition = format!("attachment; filename=\"{filename}\"");
        let uploaded = client
            .send(
                proto,
                "POST",
                "/wp-json/wp/v2/media",
                &[
                    ("x-wp-nonce", &nonce),
                    ("content-type", "image/png"),
                    ("content-disposition", &disposition),
                ],
                Bytes::from_static(&PIXEL),
            )
            .await;
        assert_eq!(
            uploaded.status,
            StatusCode::CREATED,
            "{proto:?}: {}",
            text(&uploaded)
        );
        let media: serde_json::Value = serde_json::from_slice(&uploaded.body).unwrap();
        let image = media["source_url"].as_str().unwrap().to_string();
        // The post, published.
        let title = format!("Hello over {proto:?}");
        let post = serde_json::json!({
            "title": title,
            "content": format!("<p>Written over {proto:?}.</p><img src=\"{image}\"/>"),
            "status": "publish",
            "featured_media": media["id"],
        });
        let published = client
            .send(
                proto,
                "POST",
                "/wp-json/wp/v2/posts",
                &[("x-wp-nonce", &nonce), ("content-type", "application/json")],
                Bytes::from(post.to_string()),
            )
            .await;
        assert_eq!(
            published.status,
            StatusCode::CREATED,
            "{proto:?}: {}",
            text(&published)
        );
        let post: serde_json::Value = serde_json::from_slice(&published.body).unwrap();
        let link = path_of(post["link"].as_str().unwrap(), &origin);
        assert!(
            link.starts_with("/20") && link.ends_with('/') && !link.contains('?'),
            "{proto:?}: a pretty permalink, not {link}"
        );
        // A comment on it.
        let commented = client
            .form(
                proto,
                "/wp-comments-post.php",
                &[
                    ("comment_post_ID", &post["id"].to_string()),
                    ("comment", &format!("A comment over {proto:?}")),
                    ("submit", "Post Comment"),
                ],
            )
            .await;
        assert_eq!(
            commented.status,
            StatusCode::FOUND,
            "{proto:?}: {}",
            text(&commented)
        );
        // Read back through the permalink (the front controller answers it).
        let page = client.get(proto, &link).await;
        assert_eq!(page.status, StatusCode::OK, "{proto:?} {link}");
        let page = text(&page);
        assert!(page.contains(&title), "{proto:?}");
        assert!(
            page.contains(&format!("A comment over {proto:?}")),
            "{proto:?}"
        );
        assert!(page.contains(&image), "{proto:?}");
        // The image, as a static file under wp-content.
        let served = client.get(proto, &path_of(&image, &origin)).await;
        assert_eq!(served.status, StatusCode::OK, "{proto:?} {image}");
        assert_eq!(served.header("content-type"), Some("image/png"));
        assert_eq!(&served.body[..], &PIXEL[..], "{proto:?}");
        // The theme's files, through Debian's links.
        let style = client
            .get(proto, "/wp-content/themes/twentytwentythree/style.css")
            .await;
        assert_eq!(style.status, StatusCode::OK, "{proto:?}");
        // What must never be served: hidden files, and a script that is not a file.
        let hidden = client.get(proto, "/.htaccess").await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{proto:?}");
    }
    // An upload is never run as PHP: a path through it goes to the front controller.
    let upload = text(&client.get(Proto::H1, "/wp-json/wp/v2/media").await);
    let first: serde_json::Value = serde_json::from_str(&upload).unwrap();
    let image = path_of(first[0]["source_url"].as_str().unwrap(), &origin);
    let through = client.get(Proto::H1, &format!("{image}/x.php")).await;
    assert_eq!(through.status, StatusCode::NOT_FOUND);
    assert!(!through.body.starts_with(&PIXEL[..8]));

    if let Some(binary) = support::browser::chromium() {
        chromium(binary, &server, &client);
    } else {
        skip_without(test, "Chromium", "apt-get install chromium");
    }
    drop(php);
}

/// Chromium, logged in with the client's cookies, loads the front page and wp-admin over
/// HTTP/3.
fn chromium(binary: &str, server: &Foobar, client: &Client) {
    let spki = server.spki_sha256();
    let mut browser = support::browser::Browser::start(binary, &client.origin, &spki);
    let front = browser.load(&format!("https://{}/", client.origin));
    assert_eq!(front.protocol, "h3", "{front:?}");
    assert!(front.title.contains("foobar"), "{front:?}");
    assert!(front.text.contains("Hello over H3"), "{front:?}");
    for (name, value) in &client.cookies {
        let set = browser.call(
            "Network.setCookie",
            serde_json::json!({
                "name": name,
                "value": value,
                "domain": "www.foobar.com",
                "path": "/",
                "secure": true,
            }),
        );
        assert_eq!(set["result"]["success"], true, "{set}");
    }
    let admin = browser.load(&format!("https://{}/wp-admin/", client.origin));
    assert_eq!(admin.protocol, "h3", "{admin:?}");
    assert!(admin.text.contains("Dashboard"), "{admin:?}");
    eprintln!(
        "Chromium: {} over {} ({}), {} over {} ({})",
        front.href, front.protocol, front.title, admin.href, admin.protocol, admin.title
    );
}
