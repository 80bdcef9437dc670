# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_nsqrs_global_optspecs
    string join \n h/help V/version
end

function __fish_nsqrs_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_nsqrs_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_nsqrs_using_subcommand
    set -l cmd (__fish_nsqrs_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c nsqrs -n "__fish_nsqrs_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -s V -l version -d 'Print version'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "serve" -d 'Run the nsqd-compatible broker (what runs when this binary is invoked as `nsqd`)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "lookupd" -d 'Run the nsqlookupd-compatible discovery server (what runs when this binary is invoked as `nsqlookupd`)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "admin" -d 'Run the nsqadmin-compatible web UI, with archived messages, deferred messages and replays (what runs when this binary is invoked as `nsqadmin`)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "bench" -d 'Load generator and latency meter for any NSQ-compatible server (NSQ\'s bench method)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "pub" -d 'Publish messages from arguments or stdin to nsqd (to_nsq)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "tail" -d 'Print the messages of one or more topics as they arrive (nsq_tail)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "to-file" -d 'Archive topics to rotating (optionally gzip) files, finishing only what is fsync\'ed (nsq_to_file)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "stat" -d 'Rates and depths of one channel across nsqd, or of the whole cluster (nsq_stat)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "to-db" -d 'Archive a topic and its lifecycle events into SQLite or PostgreSQL, finishing only what is committed'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "trace" -d 'Show a message\'s history from the archive: publish, deliveries, requeues, finishes, replays'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "replay" -d 'Republish archived messages of a time window in publish order, resumable, optionally to another topic'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "topic" -d 'Create, delete, empty, pause, unpause or tombstone a topic on a broker or the cluster'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "channel" -d 'Create, delete, empty, pause or unpause a channel on a broker or the cluster'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "to-nsq" -d 'Forward topics to other nsqd, finishing each message only once a destination took it (nsq_to_nsq)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "to-http" -d 'Send each message of a topic to HTTP endpoints, finishing it only once one answered 2xx (nsq_to_http)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "adopt" -d 'Take over a lost broker\'s replicated messages on the broker that holds its copy'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l config -d 'Path to a TOML config file; keys are flag names with \'-\' as \'_\' [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l log-level -d 'Log verbosity: debug, info, warn, error, or fatal' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l log-prefix -d 'Log message prefix' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l verbose -d '[deprecated] has no effect, use --log-level' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l node-id -d 'Unique part for message IDs, (int) in range [0,1024) [default: hash of hostname]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l worker-id -d '[deprecated] use --node-id' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tcp-address -d '<addr>:<port> to listen on for TCP clients (port 0 picks a free one; nsqrs has no unix-socket listener)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-address -d '<addr>:<port> to listen on for HTTP clients; empty disables HTTP' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l https-address -d '<addr>:<port> to listen on for HTTPS clients (opened only with --tls-cert/--tls-key)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l auth-http-address -d '<addr>:<port> or URL of an auth server (may be given multiple times) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l auth-http-request-method -d 'HTTP method for auth server requests: get or post' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l broadcast-address -d 'Address registered with nsqlookupd [default: the OS hostname]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l broadcast-tcp-port -d 'TCP port registered with nsqlookupd; 0 means the port actually listened on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l broadcast-http-port -d 'HTTP port registered with nsqlookupd; 0 means the port actually listened on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l lookupd-tcp-address -d 'nsqlookupd TCP address to register with (may be given multiple times) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-client-connect-timeout -d 'Timeout for outbound HTTP connects (nsqlookupd, auth server)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-client-request-timeout -d 'Timeout for outbound HTTP requests (nsqlookupd, auth server)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l topology-region -d 'Region of this nsqd, told to lookupd and to clients in IDENTIFY (nsqrs itself does not prefer consumers of the same region) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l topology-zone -d 'Zone of this nsqd, told to lookupd and to clients in IDENTIFY (nsqrs itself does not prefer consumers of the same zone) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l data-path -d 'Directory for nsqd.dat and nsqrs\'s topic logs and channel journals (in nsqrs-data/) [default: current directory]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l mem-queue-size -d 'How far an #ephemeral channel may fall behind before its oldest messages are dropped, and the size of an #ephemeral topic (nsqrs writes every other message to disk, so a backlog never fills memory; 0 keeps one)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-bytes-per-file -d 'Size of each topic log segment file; a segment is deleted once every channel has finished its messages' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l sync-every -d 'fsync the logs after this many messages (1: before every OK, one fsync shared by the publishers waiting)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l sync-timeout -d 'fsync the logs at least this often' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l queue-scan-worker-pool-max -d 'Accepted for nsqd\'s sake, no effect: nsqrs checks every channel\'s timeouts every 20ms' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l queue-scan-selection-count -d 'Accepted for nsqd\'s sake, no effect: nsqrs checks every channel\'s timeouts every 20ms' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l msg-timeout -d 'Time a delivered message may stay unanswered before it is delivered again (clients may ask for another up to --max-msg-timeout)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-msg-timeout -d 'Longest message timeout a client may ask for in IDENTIFY' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-msg-size -d 'Largest message body accepted; larger ones are refused with E_BAD_MESSAGE' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-req-timeout -d 'Longest delay a REQ or a DPUB may ask for' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-body-size -d 'Largest command body accepted (an MPUB\'s, say); larger ones are refused' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-heartbeat-interval -d 'Longest heartbeat interval a client may ask for in IDENTIFY' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-rdy-count -d 'Largest RDY a client may send' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-output-buffer-size -d 'Largest output buffer a client may ask for in IDENTIFY' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-output-buffer-timeout -d 'Longest output buffer timeout a client may ask for in IDENTIFY' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l min-output-buffer-timeout -d 'Shortest output buffer timeout a client may ask for in IDENTIFY' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l output-buffer-timeout -d 'How long messages for a client may wait to be written together, unless it asks otherwise in IDENTIFY' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-channel-consumers -d 'Most consumers one channel may have (more are refused at SUB); 0 means unlimited' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-address -d 'UDP <addr>:<port> of a statsd daemon for pushing stats [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-interval -d 'Duration between pushing to statsd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-mem-stats -d 'Also send mem.* keys to statsd (the process\'s resident memory; nsqd\'s Go heap and GC keys are sent as 0)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-prefix -d 'Prefix used for keys sent to statsd (%s for host replacement)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-udp-packet-size -d 'The size in bytes of statsd UDP packets' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-exclude-ephemeral -d 'Skip ephemeral topics and channels when sending stats to statsd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l e2e-processing-latency-percentile -d 'Message processing time percentiles (as float (0, 1.0]) to track (may be given multiple times or comma separated \'1.0,0.99,0.95\') [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l e2e-processing-latency-window-time -d 'Calculate end to end latency quantiles for this duration of time' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-cert -d 'Path to certificate file [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-key -d 'Path to key file [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-client-auth-policy -d 'Client certificate auth policy (\'require\' or \'require-verify\'); forces --tls-required [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-root-ca-file -d 'Path to certificate authority file [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-required -d 'Require TLS for client connections (true, false, tcp-https)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-min-version -d 'Oldest TLS version accepted: tls1.2 or tls1.3 (tls1.0 and tls1.1 are accepted and mean tls1.2, the oldest rustls speaks)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l deflate -d 'Enable deflate feature negotiation (client compression)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-deflate-level -d 'Max deflate compression level a client can negotiate (> values == > nsqd CPU usage)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l embedded-lookupd -d 'nsqrs: also run a lookupd in this process and register with it, when no --lookupd-tcp-address is given (never in the `nsqd` role)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l embedded-lookupd-tcp-address -d 'nsqrs: <addr>:<port> of the embedded lookupd\'s TCP listener' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l embedded-lookupd-http-address -d 'nsqrs: <addr>:<port> of the embedded lookupd\'s HTTP listener' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l embedded-admin -d 'nsqrs: also serve the admin web UI (nsqadmin) in this process (never in the `nsqd` role)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l embedded-admin-http-address -d 'nsqrs: <addr>:<port> of the embedded admin web UI' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l lifecycle-events -d 'nsqrs: report what happens to messages as JSON lines on topic nsqrs.events (kept only while that topic has a channel; docs/events.md): all (publishes, deliveries, requeues, timeouts, finishes, ...), publish (publishes only), or off' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l lifecycle-events-topics -d 'nsqrs: only topics matching this regex report lifecycle events [default: all]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l snappy -d 'Enable snappy feature negotiation (client compression)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l enable-experiment -d 'Accepted for nsqd\'s sake (topology-aware-consumption), no effect in nsqrs; may be given multiple times [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-admin-token -d 'nsqrs: bearer token required by the HTTP admin endpoints (/topic/*, /channel/*, /config/*, /deferred*) as `Authorization: Bearer <token>`; /pub, /mpub, /stats, /ping, /info, /message and /metrics stay open [default: none, everything open as in nsqd]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l replicate-to -d 'nsqrs: a peer\'s nsqd TCP address to replicate every publish to (may be given multiple times); see docs/replication.md [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l replicas -d 'nsqrs: peers that must hold a batch before OK is answered (1..=number of peers) [default: 1 with --replicate-to, else 0]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l replica-policy -d 'nsqrs: with fewer than --replicas peers reachable, refuse publishes (strict) or accept them unreplicated (best-effort)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l replica-timeout -d 'nsqrs: how long a publish waits for its peers\' acknowledgements' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l adopt-after -d 'nsqrs: adopt a peer\'s copy once the peer has been unreachable this long; 0 = never (adopt explicitly with `nsqrs adopt`)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l config -d 'Path to a TOML config file; keys are flag names with \'-\' as \'_\' [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l log-level -d 'Log verbosity: debug, info, warn, error, or fatal' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l log-prefix -d 'Log message prefix' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l verbose -d '[deprecated] has no effect, use --log-level' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l tcp-address -d '<addr>:<port> to listen on for TCP clients' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l http-address -d '<addr>:<port> to listen on for HTTP clients' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l broadcast-address -d 'Address of this lookupd node [default: the OS hostname]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l inactive-producer-timeout -d 'Duration of time a producer will remain in the active list since its last ping' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -l tombstone-lifetime -d 'Duration of time a producer will remain tombstoned if registration remains' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand lookupd" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l config -d 'Path to a TOML config file; keys are flag names with \'-\' as \'_\' [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l log-level -d 'Log verbosity: debug, info, warn, error, or fatal' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l log-prefix -d 'Log message prefix' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l verbose -d '[deprecated] has no effect, use --log-level' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-address -d '<addr>:<port> to listen on for HTTP clients' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l base-path -d 'URL base path' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l dev-static-dir -d '(development use only; nsqrs serves its assets from the binary)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l graphite-url -d 'Graphite HTTP address (accepted for nsqadmin compatibility; the charts come from the admin\'s own samples of /stats) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l proxy-graphite -d 'Proxy HTTP requests to graphite (accepted for nsqadmin compatibility)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l statsd-counter-format -d 'The counter stats key formatting of statsd (accepted for nsqadmin compatibility)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l statsd-gauge-format -d 'The gauge stats key formatting of statsd (accepted for nsqadmin compatibility)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l statsd-prefix -d 'Prefix used for keys sent to statsd (accepted for nsqadmin compatibility)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l statsd-interval -d 'Time interval nsqd is configured to push to statsd (accepted for nsqadmin compatibility)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l notification-http-endpoint -d 'HTTP endpoint (fully qualified) to which POST notifications of admin actions will be sent [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-client-connect-timeout -d 'Timeout for HTTP connect' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-client-request-timeout -d 'Timeout for HTTP request' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-client-tls-insecure-skip-verify -d 'Configure the HTTP client to skip verification of TLS certificates (https:// addresses)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-client-tls-root-ca-file -d 'Path to CA file for the HTTP client [default: the system\'s]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-client-tls-cert -d 'Path to certificate file for the HTTP client [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-client-tls-key -d 'Path to key file for the HTTP client [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l allow-config-from-cidr -d 'A CIDR from which to allow HTTP requests to the /config endpoint' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l acl-http-header -d 'HTTP header to check for authenticated admin users' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l lookupd-http-address -d 'lookupd HTTP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l nsqd-http-address -d 'nsqd HTTP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l admin-user -d 'Admin user (may be given multiple times; if specified, only these users will be able to perform privileged actions; acl-http-header is used to determine the authenticated user)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l http-admin-token -d 'nsqrs: bearer token actions must carry (Authorization: Bearer TOKEN), also sent to the brokers (their --http-admin-token) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l db -d 'nsqrs: the to-db archive (SQLite file or postgres:// URL) for the messages pages and replays [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -l stats-sample-interval -d 'nsqrs: how often the brokers\' /stats are sampled for the charts (one hour is kept)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand admin" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l nsqd-tcp-address -d '<addr>:<port> of the nsqd TCP endpoint to load' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l topic -d 'Topic the writers publish to and the readers consume' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l channel -d 'Channel the readers consume on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l size -d 'Message body size in bytes' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l batch-size -d 'Messages per MPUB (1 publishes with PUB)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l runfor -d 'How long to run, Go duration syntax (10s, 500ms, 1m30s)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l connections -d 'Connections per role [default: number of CPUs]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l rdy -d 'RDY window of each reader connection' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l rate -d 'Latency mode: messages per second to publish [default: 1000]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l count -d 'Stop after this many messages (writers share it out; readers stop once it is reached)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l mode -d 'What to run' -r -f -a "writer\t'MPUB batches on every connection, waiting for each OK (bench_writer)'
reader\t'SUB + RDY on every connection, FIN every message (bench_reader)'
both\t'Writer and reader at the same time on the same topic'
latency\t'Publish at --rate with timestamps in the bodies and measure publish→deliver latency'
null-server\t'Serve a storeless V2 endpoint on --listen, to validate the bench and find its ceiling'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l format -d 'How the report is printed' -r -f -a "table\t'Tables for people'
json\t'One JSON object'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l server-pid -d 'Sample this process\'s resident memory, now and at its peak (the broker\'s, say), during the run' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l output-buffer-size -d 'IDENTIFY output_buffer_size for every connection (-1 = unbuffered) [default: server\'s]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l output-buffer-timeout -d 'IDENTIFY output_buffer_timeout, Go duration or -1 to disable [default: server\'s 250ms]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l client-opt -d 'go-nsq option for every connection, for TLS, compression and AUTH (tls_v1,true, tls_root_ca_file,PATH, snappy,true, deflate,true, auth_secret,S, …); repeatable' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l listen -d 'null-server mode: address to listen on (port 0 picks a free one)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l topic -d 'NSQ topic to publish to' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l nsqd-tcp-address -d 'nsqd TCP address (may be given multiple times; every message goes to each)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l delimiter -d 'Character that separates messages on stdin (a single byte)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l rate -d 'Throttle to this many messages per second (0 = no limit)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l defer -d 'Deliver each message only after this delay (DPUB), Go duration syntax' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l batch-size -d 'Messages per MPUB when reading stdin (1 publishes each with PUB)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l producer-opt -d 'go-nsq producer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand pub" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l topic -d 'NSQ topic (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l channel -d 'NSQ channel [default: tail<random 6 digits>#ephemeral]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l nsqd-tcp-address -d 'nsqd TCP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l lookupd-http-address -d 'nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l max-in-flight -d 'Max number of messages to allow in flight' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -s n -l n -d 'Total messages to show, then exit (0 = forever)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l print-topic -d 'Prefix each message with its topic and " | "' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l format -d 'How each message is printed' -r -f -a "raw\t'The body and a newline, as nsq_tail prints it'
json\t'One JSON object a line: topic, id, timestamp, attempts, nsqd_address, body'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l consumer-opt -d 'go-nsq consumer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand tail" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l topic -d 'NSQ topic (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l topic-pattern -d 'Regex of topics to archive, found through lookupd [default: every topic]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l topic-refresh -d 'How often lookupd is asked for new topics (without --topic)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l channel -d 'NSQ channel' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l nsqd-tcp-address -d 'nsqd TCP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l lookupd-http-address -d 'nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l consumer-opt -d 'go-nsq consumer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l max-in-flight -d 'Max messages in flight; also how many are written before an fsync and FIN' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l output-dir -d 'Directory for finished files' -r -F
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l work-dir -d 'Directory for files being written, moved to --output-dir when closed [default: --output-dir]' -r -F
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l datetime-format -d 'strftime format for <DATETIME> (%Y %y %m %d %H %I %M %S %p %A %a %B %b %Z %z %%)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l filename-format -d 'File name template: <TOPIC> <HOST> <PID> <DATETIME> <REV>' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l host-identifier -d 'Replaces <HOST>; may use <SHORT_HOST> and <HOSTNAME> [default: short hostname]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l gzip -d 'gzip the files (".gz" is appended to the name if missing)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l gzip-level -d 'gzip compression level, 1 (fastest) to 9 (best)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l skip-empty-files -d 'Do not create files for intervals without messages' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l rotate-size -d 'Rotate a file once it holds more than this many bytes (0 = never)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l rotate-interval -d 'Rotate a file after this long (0 = never)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l sync-interval -d 'fsync (and FIN what was written) at least this often' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l http-client-connect-timeout -d 'Time allowed to connect to lookupd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l http-client-request-timeout -d 'Time allowed for each lookupd request' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l log-level -d 'Log verbosity: debug, info, warn, error, or fatal' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l log-prefix -d 'Log message prefix' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l format -d 'What each message becomes in the file' -r -f -a "raw\t'The body and a newline, as nsq_to_file writes it'
json\t'One JSON object a line: id, timestamp, attempts, body'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-file" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l topic -d 'NSQ topic (required with --channel; filters the cluster table otherwise)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l channel -d 'NSQ channel; without it, every topic and channel of the cluster is shown' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l nsqd-http-address -d 'nsqd HTTP address, host:port or http://host:port (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l lookupd-http-address -d 'nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l interval -d 'Time between reports' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l count -d 'Number of reports, then exit (0 = forever)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l format -d 'How each report is printed' -r -f -a "table\t'nsq_stat\'s columns (one channel) or a table of the cluster'
json\t'One JSON object per report'
csv\t'A header row, then one row per report (per topic/channel for the cluster)'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l http-client-connect-timeout -d 'Time allowed to connect to an nsqd or lookupd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l http-client-request-timeout -d 'Time allowed for each /stats or lookupd request' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -l replication -d 'nsqrs: show each broker\'s replication peers and their lag (log bytes not acknowledged, age and count of channel states not confirmed) instead of topics and channels' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand stat" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l topic -d 'NSQ topic to archive' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l channel -d 'The archiver\'s channel on --topic [default: nsqrs_to_db.<topic>.<hash of the topic and the archive\'s identity>, the same on every restart and for no other archive]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l events-channel -d 'With --events, the archiver\'s channel on nsqrs.events [default: as --channel\'s default]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l nsqd-tcp-address -d 'nsqd TCP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l lookupd-http-address -d 'nsqlookupd HTTP address, host:port or http://host:port (may be given multiple times); follows the topic on every nsqd it knows' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l db -d 'SQLite file, or a postgres:// URL' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l events -d 'Also archive the lifecycle events nsqrs brokers publish on nsqrs.events about this topic (what trace shows: deliveries, requeues, timeouts, finishes)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l batch-size -d 'Messages per transaction' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l flush-interval -d 'Commit a partial batch after this long' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l max-in-flight -d 'Max messages in flight [default: twice --batch-size, so one batch fills while another commits]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -l consumer-opt -d 'go-nsq consumer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-db" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l db -d 'SQLite file, or a postgres:// URL' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l format -d 'How the history is printed' -r -f -a "table\t'The message, then a table per channel'
json\t'One JSON object with every row, timeline and note'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l grep -d 'Find messages whose body contains TEXT' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l where -d 'Find messages whose JSON body has field KEY equal to VALUE' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l since -d 'Only search messages published within this long' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l topic -d 'Only search this topic' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l limit -d 'List at most this many matches, the newest (the count of all is still given) [default: 20]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -l nsqd-http-address -d 'Also ask this nsqd (HTTP, host:port or http://host:port) for the message\'s live state (best effort)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand trace" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l since -d 'Start of the window: a duration ago (2h) or an RFC 3339 time' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l until -d 'End of the window (exclusive): a duration ago or an RFC 3339 time [default: now]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l topic -d 'The archived topic to replay' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l to-topic -d 'Publish to this topic instead of --topic' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l rate -d 'At most this many messages a second (0 = as fast as the broker takes them)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l id -d 'Replay only this message ID (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l dry-run -d 'Say what would be replayed; publish nothing' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l db -d 'SQLite file, or a postgres:// URL (also where runs are checkpointed)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l from-file -d 'Read messages from `to-file --format json` files instead of the archive' -r -F
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l nsqd-tcp-address -d 'The nsqd to publish to (TCP)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l batch-size -d 'Messages per MPUB (and per checkpoint); batches also stop at 4 MiB of bodies' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l resume -d 'Continue this run (its window and target come from the run)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -l producer-opt -d 'go-nsq producer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -l node -d 'The node to tombstone, as lookupd names it: broadcast_address:http_port' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -l nsqd-http-address -d 'nsqd HTTP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -l lookupd-http-address -d 'nsqlookupd HTTP address: act on the whole cluster (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -l http-admin-token -d 'Bearer token the brokers require (their --http-admin-token) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -l http-client-connect-timeout -d 'How long to wait for each HTTP connection to a broker or lookupd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -l http-client-request-timeout -d 'How long to wait for each HTTP answer from a broker or lookupd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand topic" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand channel" -l nsqd-http-address -d 'nsqd HTTP address (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand channel" -l lookupd-http-address -d 'nsqlookupd HTTP address: act on the whole cluster (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand channel" -l http-admin-token -d 'Bearer token the brokers require (their --http-admin-token) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand channel" -l http-client-connect-timeout -d 'How long to wait for each HTTP connection to a broker or lookupd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand channel" -l http-client-request-timeout -d 'How long to wait for each HTTP answer from a broker or lookupd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand channel" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l topic -d 'Topic to consume (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l channel -d 'Channel to consume each topic on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l nsqd-tcp-address -d 'nsqd TCP address to consume from (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l lookupd-http-address -d 'nsqlookupd HTTP address that finds the nsqd to consume from, host:port or http://host:port (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l destination-nsqd-tcp-address -d 'nsqd TCP address to publish to (may be given multiple times; --mode picks one per message)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l destination-topic -d 'Publish every message to this topic [default: the topic it was consumed from]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l mode -d 'How each message\'s destination is chosen: hostpool (in turn among those that work; one that failed rests 30 s, then longer), round-robin (in turn, regardless), epsilon-greedy (mostly the fastest)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l max-in-flight -d 'Messages in flight at once (consumed, not yet answered by a destination)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l require-json-field -d 'Forward only JSON objects that have this field; others are finished unsent' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l require-json-value -d 'With --require-json-field: forward only when the field has this value (a string equal to it, or a number equal to it read as a number)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l whitelist-json-field -d 'Forward JSON objects rewritten to only these fields (may be given multiple times); bodies that are not JSON objects are finished unsent' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l status-every -d 'Print a status line on stderr every N messages sent, per destination and in all (0 = never)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l consumer-opt -d 'go-nsq consumer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l producer-opt -d 'go-nsq producer option key,value for the destinations (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-nsq" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l topic -d 'Topic to consume' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l channel -d 'Channel to consume it on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l nsqd-tcp-address -d 'nsqd TCP address to consume from (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l lookupd-http-address -d 'nsqlookupd HTTP address that finds the nsqd to consume from, host:port or http://host:port (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l post -d 'URL (http:// or https://) to POST each message to, as the request body (may be given multiple times; --mode picks)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l get -d 'URL to GET for each message, with %s where the message goes, URL-escaped (may be given multiple times; --mode picks)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l content-type -d 'Content-Type of the POST requests' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l header -d 'Header for every request, key:value (may be given multiple times; replaces the default User-Agent or Content-Type when it names them)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l mode -d 'How each message\'s endpoint is chosen: hostpool (in turn among those that work; one that failed rests 30 s, then longer), round-robin (in turn, regardless), epsilon-greedy (mostly the fastest), multicast (every endpoint)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -s n -l n -d 'Messages handled at once, each one request at a time' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l sample -d 'Share of messages to send, from 0.0 to 1.0; the others are finished unsent' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l max-in-flight -d 'Messages in flight at once (consumed, not yet answered)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l status-every -d 'Print a status line on stderr every N requests, per endpoint and in all (0 = never)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l http-client-connect-timeout -d 'Time allowed to connect to an endpoint (TLS handshake included)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l http-client-request-timeout -d 'Time allowed for a whole request, answer included; past it the message is requeued' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l consumer-opt -d 'go-nsq consumer option key,value (may be given multiple times)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand to-http" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand adopt" -l node -d 'The lost broker: its node id, its name (broadcast address:TCP port) or TCP address' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand adopt" -l nsqd-http-address -d 'HTTP address of the broker that holds the copy and adopts it' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand adopt" -l http-admin-token -d 'Bearer token, when the adopter runs with --http-admin-token [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand adopt" -l timeout -d 'How long to wait for the adoption to finish (a large copy takes a while)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand adopt" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "serve" -d 'Run the nsqd-compatible broker (what runs when this binary is invoked as `nsqd`)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "lookupd" -d 'Run the nsqlookupd-compatible discovery server (what runs when this binary is invoked as `nsqlookupd`)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "admin" -d 'Run the nsqadmin-compatible web UI, with archived messages, deferred messages and replays (what runs when this binary is invoked as `nsqadmin`)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "bench" -d 'Load generator and latency meter for any NSQ-compatible server (NSQ\'s bench method)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "pub" -d 'Publish messages from arguments or stdin to nsqd (to_nsq)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "tail" -d 'Print the messages of one or more topics as they arrive (nsq_tail)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "to-file" -d 'Archive topics to rotating (optionally gzip) files, finishing only what is fsync\'ed (nsq_to_file)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "stat" -d 'Rates and depths of one channel across nsqd, or of the whole cluster (nsq_stat)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "to-db" -d 'Archive a topic and its lifecycle events into SQLite or PostgreSQL, finishing only what is committed'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "trace" -d 'Show a message\'s history from the archive: publish, deliveries, requeues, finishes, replays'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "replay" -d 'Republish archived messages of a time window in publish order, resumable, optionally to another topic'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "topic" -d 'Create, delete, empty, pause, unpause or tombstone a topic on a broker or the cluster'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "channel" -d 'Create, delete, empty, pause or unpause a channel on a broker or the cluster'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "to-nsq" -d 'Forward topics to other nsqd, finishing each message only once a destination took it (nsq_to_nsq)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "to-http" -d 'Send each message of a topic to HTTP endpoints, finishing it only once one answered 2xx (nsq_to_http)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "adopt" -d 'Take over a lost broker\'s replicated messages on the broker that holds its copy'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve lookupd admin bench pub tail to-file stat to-db trace replay topic channel to-nsq to-http adopt help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
