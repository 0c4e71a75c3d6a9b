<?php
// Five lines, 300 ms apart, each flushed as it is written; a warning on stderr first.
error_log('stream.php started');
header('Content-Type: text/plain');
while (ob_get_level()) { ob_end_flush(); }
for ($i = 0; $i < 5; $i++) {
    echo "line $i\n";
    flush();
    usleep(300000);
}
