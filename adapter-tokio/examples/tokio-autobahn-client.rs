//! The Autobahn Testsuite's client testee (for `wstest -m fuzzingserver`) on
//! wharf-tokio: runs every case the server offers, echoing each message, then
//! asks the server to write its reports. Offers permessage-deflate (cases
//! 12.* and 13.*).
//!
//! ```sh
//! cargo run --release -p wharf-tokio --example tokio-autobahn-client -- --url ws://127.0.0.1:9001 [--ca PEM] [--agent NAME]
//! ```

use wharf_tokio::{connect, ClientConfig, ClientTls, Config, DeflateConfig, Message};

/// Runs one connection: echoes messages (when `echo`) or collects them.
async fn run(
    url: &str,
    config: &ClientConfig,
    echo: bool,
) -> Result<Vec<Message>, Box<dyn std::error::Error>> {
    let mut ws = connect(url, config).await?;
    let mut got = Vec::new();
    while let Some(Ok(message)) = ws.recv().await {
        if echo {
            if ws.send(message).await.is_err() {
                break;
            }
        } else {
            got.push(message);
        }
    }
    Ok(got)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut base = "ws://127.0.0.1:9001".to_owned();
    let mut ca = None;
    let mut agent = "wharf-tokio".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => base = value.trim_end_matches('/').to_owned(),
            "--ca" => ca = Some(value),
            "--agent" => agent = value,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let mut core = Config::default();
    core.max_message_size = 64 << 20;
    core.max_frame_size = 64 << 20;
    core.max_send_queue = 128 << 20;
    core.max_receive_queue = 128 << 20;
    core.deflate = Some(DeflateConfig::default());
    let mut config = ClientConfig::new().with_config(core);
    if let Some(ca) = ca {
        config = config.with_tls(
            ClientTls::builder()
                .with_pem_roots(&std::fs::read(ca)?)?
                .build()?,
        );
    }
    let count = run(&format!("{base}/getCaseCount"), &config, false).await?;
    let count: usize = match count.first() {
        Some(Message::Text(t)) => t.parse()?,
        other => return Err(format!("unexpected case count {other:?}").into()),
    };
    println!("running {count} cases as {agent}");
    for case in 1..=count {
        // A case may end in a failed connection on purpose; go on.
        if let Err(e) = run(
            &format!("{base}/runCase?case={case}&agent={agent}"),
            &config,
            true,
        )
        .await
        {
            println!("case {case}: {e}");
        }
    }
    run(
        &format!("{base}/updateReports?agent={agent}"),
        &config,
        false,
    )
    .await?;
    println!("done: {count} cases");
    Ok(())
}
