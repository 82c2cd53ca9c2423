"""`gatekey console`: a web console for service tokens on 127.0.0.1, signing every admin API
call with the operator's own AWS credentials, as the CLI does (docs/console.md).

`views` turns the admin API's tokens into what the pages show (state, countdown, filters,
the expiry timeline); `pages` renders HTML; `server` is the local web server and its
security (run token, Host and Origin checks, CSP); `command` is the CLI subcommand."""
