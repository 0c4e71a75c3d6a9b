<?php
// benches/db-statements.sh's client: runs each statement the app's pages send (foobar's and the
// classic stack's, as app/src/store/mysql.rs and index.php write them) many times over one
// connection with server-side prepares, and prints the database server's CPU per execution,
// read from /proc for the server's threads. One client, one statement at a time: what the
// server itself spends on a statement, without the load generator's batching.

declare(strict_types=1);

$pid = (int) getenv('DB_PID');
$runs = (int) (getenv('RUNS') ?: 20000);

/** CPU seconds of every thread of process $pid. */
function cpu(int $pid): float {
    $ticks = 0;
    foreach (glob("/proc/$pid/task/*/stat") as $file) {
        $stat = (string) file_get_contents($file);
        $fields = explode(' ', substr($stat, strrpos($stat, ')') + 2));
        $ticks += (int) $fields[11] + (int) $fields[12];
    }
    return $ticks / 100;
}

$db = new PDO(getenv('DB_DSN'), 'root', '', [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_EMULATE_PREPARES => false,
]);
$count = '(SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id)';
$post = "p.id, p.title, p.body, p.created_at, p.updated_at, p.version, $count";
$statements = [
    'SELECT 1 (the floor: a round trip)' => ['SELECT 1', []],
    'the post and its comment count (JSON; classic page 1 of 2)' => ["SELECT $post FROM posts p WHERE p.id = ?", [1]],
    'the post without the count' => ['SELECT p.id, p.title, p.body, p.created_at, p.updated_at, p.version FROM posts p WHERE p.id = ?', [1]],
    'the comments (classic page 2 of 2)' => ['SELECT id, post_id, author, body, created_at FROM comments '
        . 'WHERE post_id = ? AND id > ? ORDER BY id LIMIT ?', [1, 0, 51]],
    'the post and comments in one, counted (foobar, a later page)' => ["(SELECT 0 AS part, $post FROM posts p WHERE p.id = ?) UNION ALL "
        . '(SELECT 1, id, author, body, created_at, 0, 0, 0 FROM comments WHERE post_id = ? AND id > ? ORDER BY id LIMIT ?)', [1, 1, 0, 51]],
    'the post and comments in one (foobar, the first page)' => ['(SELECT 0 AS part, p.id, p.title, p.body, p.created_at, p.updated_at, p.version, 0 '
        . 'FROM posts p WHERE p.id = ?) UNION ALL '
        . '(SELECT 1, id, author, body, created_at, 0, 0, 0 FROM comments WHERE post_id = ? AND id > ? ORDER BY id LIMIT ?)', [1, 1, 0, 51]],
];
printf("%-62s %12s %12s\n", 'statement', 'db CPU us', 'round trip us');
foreach ($statements as $name => [$sql, $args]) {
    $statement = $db->prepare($sql);
    for ($i = 0; $i < 1000; $i++) {
        $statement->execute($args);
        $statement->fetchAll();
    }
    $cpu = cpu($pid);
    $start = microtime(true);
    for ($i = 0; $i < $runs; $i++) {
        $statement->execute($args);
        $statement->fetchAll();
    }
    printf("%-62s %12.1f %12.1f\n", $name, (cpu($pid) - $cpu) * 1e6 / $runs, (microtime(true) - $start) * 1e6 / $runs);
}
