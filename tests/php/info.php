<?php
// What the script was told: the CGI variables the tests check.
header('Content-Type: application/json');
$keys = ['REQUEST_METHOD', 'REQUEST_URI', 'QUERY_STRING', 'SCRIPT_NAME', 'SCRIPT_FILENAME',
         'PATH_INFO', 'DOCUMENT_ROOT', 'HTTPS', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL',
         'REMOTE_ADDR', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'HTTP_HOST', 'HTTP_X_THING',
         'HTTP_PROXY', 'GATEWAY_INTERFACE'];
$out = [];
foreach ($keys as $key) {
    $out[$key] = $_SERVER[$key] ?? null;
}
$body = file_get_contents('php://input');
$out['body_length'] = strlen($body);
$out['body_sum'] = array_sum(array_map('ord', str_split($body === '' ? '' : substr($body, 0, 100000))));
$out['post'] = $_POST;
$out['pid'] = getmypid();
echo json_encode($out);
