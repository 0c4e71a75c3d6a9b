<?php
// Sleeps as long as asked before answering.
usleep((int) ($_GET['ms'] ?? 0) * 1000);
echo "slept\n";
