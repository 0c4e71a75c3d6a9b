<?php
// A CGI Status header and a redirect.
if (isset($_GET['go'])) {
    header('Location: /elsewhere');
    exit;
}
http_response_code(418);
echo "teapot\n";
