//! Per-user rights on the nodes: each `[[auth.users]]` entry with its own `backend_user` reaches
//! the nodes as that ACL user, so the nodes' ACLs decide what each proxy user may do, on shared
//! pipelined connections, exclusive ones (WATCH, blocking commands) and subscriptions alike.

mod common;

use clusterless::config::{Credentials, User};
use common::{small, start_with, Env, Raw};

/// Node ACL users: `reader` may read (and WATCH, connect, and say who the node is), `writer` may do
/// anything. The proxy's own login stays the nodes' default user.
fn acl_users(env: &Env) {
    for p in env.cluster.ports() {
        let reader = [
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">reader-pw",
            "~*",
            "&*",
            "+@read",
            "+@transaction",
            "+@connection",
            "+cluster|myid",
        ];
        env.cluster.cli(p, &reader).expect("ACL SETUSER reader");
        let writer = ["ACL", "SETUSER", "writer", "on", ">writer-pw", "~*", "&*", "+@all"];
        env.cluster.cli(p, &writer).expect("ACL SETUSER writer");
    }
}

fn user(name: &str, password: &str, node_user: &str, node_password: &str) -> User {
    User {
        name: name.into(),
        password: password.into(),
        backend: Some(Credentials { user: node_user.into(), password: node_password.into() }),
    }
}

/// The node's user name for each of its client connections that ran `cmd` last.
fn node_users_running(env: &Env, port: u16, cmd: &str) -> Vec<String> {
    let list = env.cluster.cli(port, &["CLIENT", "LIST"]).expect("CLIENT LIST");
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == format!("cmd={cmd}")))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("user=")).map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_proxy_user_acts_as_its_own_node_user() {
    let env = start_with(small(), |cfg| {
        cfg.auth.users = vec![
            user("app-reader", "r-pw", "reader", "reader-pw"),
            User { name: "app-plain".into(), password: "p-pw".into(), backend: None },
            user("app-writer", "w-pw", "writer", "writer-pw"),
        ];
    })
    .await;
    tokio::task::block_in_place(|| acl_users(&env));
    let key = "users-key";
    let owner =
        tokio::task::block_in_place(|| env.cluster.slot_owner(clusterless::slot::slot(key.as_bytes()))).expect("owner");

    let mut reader = Raw::connect(env.addr()).await;
    assert_eq!(reader.text(&["AUTH", "app-reader", "r-pw"]).await, "+OK\r\n");
    let mut writer = Raw::connect(env.addr()).await;
    assert_eq!(writer.text(&["AUTH", "app-writer", "w-pw"]).await, "+OK\r\n");

    // The node's ACL refuses the reader's write, in the node's own words; the writer's passes.
    assert_eq!(
        reader.text(&["SET", key, "from-reader"]).await,
        "-NOPERM this user has no permissions to run the 'set' command\r\n"
    );
    assert_eq!(writer.text(&["SET", key, "from-writer"]).await, "+OK\r\n");
    assert_eq!(reader.text(&["GET", key]).await, "$11\r\nfrom-writer\r\n");
    assert_eq!(tokio::task::block_in_place(|| node_users_running(&env, owner, "get")), vec!["reader".to_string()]);
    assert_eq!(tokio::task::block_in_place(|| node_users_running(&env, owner, "set")), vec!["writer".to_string()]);

    // Exclusive connections too: WATCH pins one as the reader; its MULTI block is the reader's.
    assert_eq!(reader.text(&["WATCH", key]).await, "+OK\r\n");
    assert_eq!(tokio::task::block_in_place(|| node_users_running(&env, owner, "watch")), vec!["reader".to_string()]);
    assert_eq!(reader.text(&["UNWATCH"]).await, "+OK\r\n");

    // A blocking pop needs write rights on the node: refused for the reader, served for the writer.
    assert_eq!(
        reader.text(&["BLPOP", "users-list", "1"]).await,
        "-NOPERM this user has no permissions to run the 'blpop' command\r\n"
    );
    assert_eq!(writer.text(&["RPUSH", "users-list", "x"]).await, ":1\r\n");
    assert_eq!(writer.text(&["BLPOP", "users-list", "1"]).await, "*2\r\n$10\r\nusers-list\r\n$1\r\nx\r\n");

    // A user without node credentials of its own uses the proxy's login (the nodes' default user).
    let mut plain = Raw::connect(env.addr()).await;
    assert_eq!(plain.text(&["AUTH", "app-plain", "p-pw"]).await, "+OK\r\n");
    assert_eq!(plain.text(&["INCR", "users-counter"]).await, ":1\r\n");
    let counter_owner =
        tokio::task::block_in_place(|| env.cluster.slot_owner(clusterless::slot::slot(b"users-counter")))
            .expect("owner");
    assert_eq!(
        tokio::task::block_in_place(|| node_users_running(&env, counter_owner, "incr")),
        vec!["default".to_string()]
    );
}
