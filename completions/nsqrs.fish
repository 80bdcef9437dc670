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

complete -c nsqrs -n "__fish_nsqrs_needs_command" -s h -l help -d 'Print help'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -s V -l version -d 'Print version'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "serve" -d 'Run the nsqd-compatible broker (what runs when this binary is invoked as `nsqd`)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "bench" -d 'Load generator and latency meter for any NSQ-compatible server (NSQ\'s bench method)'
complete -c nsqrs -n "__fish_nsqrs_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l version -d 'Print version string and exit' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l config -d 'Path to a TOML config file; keys are flag names with \'-\' as \'_\' [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l log-level -d 'Log verbosity: debug, info, warn, error, or fatal' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l log-prefix -d 'Log message prefix' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l verbose -d '[deprecated] has no effect, use --log-level' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l node-id -d 'Unique part for message IDs, (int) in range [0,1024) [default: hash of hostname]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l worker-id -d '[deprecated] use --node-id' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tcp-address -d '<addr>:<port> (or unix-socket path) to listen on for TCP clients' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-address -d '<addr>:<port> (or unix-socket path) to listen on for HTTP clients; empty disables HTTP' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l https-address -d '<addr>:<port> to listen on for HTTPS clients (opened only with --tls-cert/--tls-key)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l auth-http-address -d '<addr>:<port> or URL of an auth server (may be given multiple times) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l auth-http-request-method -d 'HTTP method for auth server requests: get or post' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l broadcast-address -d 'Address registered with nsqlookupd [default: the OS hostname]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l broadcast-tcp-port -d 'TCP port registered with nsqlookupd; 0 means the port actually listened on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l broadcast-http-port -d 'HTTP port registered with nsqlookupd; 0 means the port actually listened on' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l lookupd-tcp-address -d 'nsqlookupd TCP address to register with (may be given multiple times) [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-client-connect-timeout -d 'Timeout for outbound HTTP connects (nsqlookupd, auth server)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-client-request-timeout -d 'Timeout for outbound HTTP requests (nsqlookupd, auth server)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l topology-region -d 'Region of this nsqd, for topology-aware consumption [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l topology-zone -d 'Zone of this nsqd, for topology-aware consumption [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l data-path -d 'Path to store disk-backed messages and nsqd.dat [default: current directory]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l mem-queue-size -d 'Number of messages to keep in memory (per topic/channel)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-bytes-per-file -d 'Number of bytes per diskqueue file before rolling' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l sync-every -d 'Number of messages per diskqueue fsync' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l sync-timeout -d 'Duration of time per diskqueue fsync' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l queue-scan-worker-pool-max -d 'Max concurrency for checking in-flight and deferred message timeouts' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l queue-scan-selection-count -d 'Number of channels to check per cycle (every 100ms) for in-flight and deferred timeouts' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l msg-timeout -d 'Default duration to wait before auto-requeueing a message' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-msg-timeout -d 'Maximum duration before a message will timeout' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-msg-size -d 'Maximum size of a single message in bytes' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-req-timeout -d 'Maximum requeuing timeout for a message (also the maximum DPUB defer)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-body-size -d 'Maximum size of a single command body' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-heartbeat-interval -d 'Maximum client configurable duration of time between client heartbeats' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-rdy-count -d 'Maximum RDY count for a client' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-output-buffer-size -d 'Maximum client configurable size (in bytes) for a client output buffer' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-output-buffer-timeout -d 'Maximum client configurable duration of time between flushing to a client' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l min-output-buffer-timeout -d 'Minimum client configurable duration of time between flushing to a client' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l output-buffer-timeout -d 'Default duration of time between flushing data to clients' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-channel-consumers -d 'Maximum channel consumer connection count per nsqd instance; 0 means unlimited' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-address -d 'UDP <addr>:<port> of a statsd daemon for pushing stats [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-interval -d 'Duration between pushing to statsd' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l statsd-mem-stats -d 'Toggle sending memory and GC stats to statsd' -r
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
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l tls-min-version -d 'Minimum SSL/TLS version acceptable (\'tls1.0\', \'tls1.1\', \'tls1.2\' or \'tls1.3\')' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l deflate -d 'Enable deflate feature negotiation (client compression)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l max-deflate-level -d 'Max deflate compression level a client can negotiate (> values == > nsqd CPU usage)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l snappy -d 'Enable snappy feature negotiation (client compression)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l enable-experiment -d 'Enable an experiment (may be given multiple times): topology-aware-consumption [default: none]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -l http-admin-token -d 'nsqrs only: bearer token required by the HTTP admin endpoints (/topic/*, /channel/*, /config/*) as `Authorization: Bearer <token>`; /pub, /mpub, /stats, /ping, /info and /metrics stay open [default: none, everything open as in nsqd]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand serve" -s h -l help -d 'Print help'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l nsqd-tcp-address -d '<addr>:<port> of the nsqd TCP endpoint to load' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l topic -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l channel -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l size -d 'Message body size in bytes' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l batch-size -d 'Messages per MPUB (1 publishes with PUB)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l runfor -d 'How long to run, Go duration syntax (10s, 500ms, 1m30s)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l connections -d 'Connections per role [default: number of CPUs]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l rdy -d 'RDY window of each reader connection' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l rate -d 'Latency mode: messages per second to publish [default: 1000]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l count -d 'Stop after this many messages (writers share it out; readers stop once it is reached)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l mode -r -f -a "writer\t'MPUB batches on every connection, waiting for each OK (bench_writer)'
reader\t'SUB + RDY on every connection, FIN every message (bench_reader)'
both\t'Writer and reader at the same time on the same topic'
latency\t'Publish at --rate with timestamps in the bodies and measure publish→deliver latency'
null-server\t'Serve a storeless V2 endpoint on --listen, to validate the bench and find its ceiling'"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l format -r -f -a "table\t''
json\t''"
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l server-pid -d 'Sample this process\'s VmRSS/VmHWM (e.g. the broker) during the run' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l output-buffer-size -d 'IDENTIFY output_buffer_size for every connection (-1 = unbuffered) [default: server\'s]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l output-buffer-timeout -d 'IDENTIFY output_buffer_timeout, Go duration or -1 to disable [default: server\'s 250ms]' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -l listen -d 'null-server mode: address to listen on (port 0 picks a free one)' -r
complete -c nsqrs -n "__fish_nsqrs_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve bench help" -f -a "serve" -d 'Run the nsqd-compatible broker (what runs when this binary is invoked as `nsqd`)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve bench help" -f -a "bench" -d 'Load generator and latency meter for any NSQ-compatible server (NSQ\'s bench method)'
complete -c nsqrs -n "__fish_nsqrs_using_subcommand help; and not __fish_seen_subcommand_from serve bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
