<?php
// The classic stack's side of benches/app-load.sh: the same two URLs as foobar's app
// (/posts/{id} as HTML, /api/posts/{id} as JSON), read with PDO from the same MariaDB rows, with
// the same queries and the same page. nginx hands every request here through PHP-FPM.

declare(strict_types=1);

const COMMENTS_PER_PAGE = 50;

function fail(int $status, string $text): void {
    http_response_code($status);
    header('Content-Type: text/plain; charset=utf-8');
    echo $text;
}

function rfc3339(int $micros): string {
    return gmdate('Y-m-d\TH:i:s', intdiv($micros, 1000000))
        . sprintf('.%06d', $micros % 1000000) . 'Z';
}

function e(string $text): string {
    return htmlspecialchars($text, ENT_QUOTES | ENT_HTML5, 'UTF-8');
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
if (!preg_match('#^/(api/)?posts/([1-9][0-9]*)$#', (string) $path, $m)) {
    fail(404, 'Not found.');
    return;
}
$api = $m[1] !== '';
$id = (int) $m[2];

try {
    // Persistent connections, as a tuned PHP-FPM deployment runs: no connect per request.
    $db = new PDO(getenv('BENCH_DSN') ?: 'mysql:host=127.0.0.1;port=3306;dbname=test', 'root', '', [
        PDO::ATTR_PERSISTENT => true,
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => false,
    ]);
    $query = $db->prepare('SELECT p.id, p.title, p.body, p.created_at, p.updated_at, p.version, '
        . '(SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comment_count '
        . 'FROM posts p WHERE p.id = ?');
    $query->execute([$id]);
    $post = $query->fetch(PDO::FETCH_ASSOC);
    if ($post === false) {
        fail(404, 'Not found.');
        return;
    }
    if ($api) {
        header('Content-Type: application/json');
        header(sprintf('ETag: "%d-%d-%d"', $post['id'], $post['version'], $post['comment_count']));
        echo json_encode([
            'id' => (int) $post['id'],
            'title' => $post['title'],
            'body' => $post['body'],
            'created_at' => rfc3339((int) $post['created_at']),
            'updated_at' => rfc3339((int) $post['updated_at']),
            'comment_count' => (int) $post['comment_count'],
        ], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        return;
    }
    $query = $db->prepare('SELECT id, post_id, author, body, created_at FROM comments '
        . 'WHERE post_id = ? AND id > ? ORDER BY id LIMIT ?');
    $query->execute([$id, 0, COMMENTS_PER_PAGE + 1]);
    $comments = $query->fetchAll(PDO::FETCH_ASSOC);
} catch (PDOException $error) {
    error_log($error->getMessage());
    fail(503, 'The database is unavailable; try again shortly.');
    return;
}
$next = null;
if (count($comments) > COMMENTS_PER_PAGE) {
    $comments = array_slice($comments, 0, COMMENTS_PER_PAGE);
    $next = end($comments)['id'];
}
$created = rfc3339((int) $post['created_at']);
header('Content-Type: text/html; charset=utf-8');
?>
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title><?= e($post['title']) ?> — foobar.com</title>
  <link rel="stylesheet" href="/style.css">
</head>
<body>
  <header><p><a href="/">foobar.com</a> · <a href="/posts">Posts</a></p></header>
  <main>
    <article>
      <h1><?= e($post['title']) ?></h1>
      <p><time datetime="<?= $created ?>"><?= $created ?></time></p>
      <div class="body"><?= e($post['body']) ?></div>
    </article>
    <section>
      <h2>Comments (<?= (int) $post['comment_count'] ?>)</h2>
<?php foreach ($comments as $comment): $when = rfc3339((int) $comment['created_at']); ?>
      <div class="comment">
        <p><strong><?= e($comment['author']) ?></strong> · <time datetime="<?= $when ?>"><?= $when ?></time></p>
        <p><?= e($comment['body']) ?></p>
      </div>
<?php endforeach; ?>
<?php if ($next !== null): ?>
      <p><a rel="next" href="/posts/<?= (int) $post['id'] ?>?after=<?= (int) $next ?>">Later comments</a></p>
<?php endif; ?>
    </section>
  </main>
</body>
</html>
