// The client scenario for the PostgreSQL JDBC driver (internal/clients/doc.go
// has the protocol and the steps). prepareThreshold=1 makes every
// PreparedStatement a named server-side statement from its first execution,
// so the gateway has to carry them across upstreams; autosave stays at its
// default (never), since DSQL has no SAVEPOINT.

import java.io.InputStream;
import java.io.StringReader;
import java.net.HttpURLConnection;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.DriverInfo;

public class Scenario {
    static final String SCHEMA = System.getenv("DSQLGATE_TEST_SCHEMA");
    static final String CONTROL_URL = System.getenv("DSQLGATE_TEST_CONTROL_URL");
    static final String TZ = "America/New_York";
    static final String URL = "jdbc:postgresql://" + System.getenv("DSQLGATE_TEST_HOST") + ":"
            + System.getenv("DSQLGATE_TEST_PORT") + "/" + System.getenv("DSQLGATE_TEST_DATABASE")
            + "?sslmode=verify-full&sslrootcert=" + System.getenv("DSQLGATE_TEST_CA_FILE")
            + "&prepareThreshold=1&socketTimeout=60&connectTimeout=20";

    static Connection conn;
    static PreparedStatement doubled; // prepared in prepared_reuse, used again after the kill

    interface Body {
        String run() throws Exception;
    }

    /** A step the client cannot do; the message says why. */
    static class Skip extends Exception {
        Skip(String why) {
            super(why);
        }
    }

    public static void main(String[] args) {
        emitVersion("pgjdbc " + DriverInfo.DRIVER_VERSION + ", Java " + System.getProperty("java.version"));
        step("connect_tls", Scenario::connectTLS);
        step("param_query", Scenario::paramQuery);
        step("prepared_reuse", Scenario::preparedReuse);
        step("tx_commit", Scenario::txCommit);
        step("tx_rollback", Scenario::txRollback);
        step("error_recovery", Scenario::errorRecovery);
        step("set_observed", Scenario::setObserved);
        step("bulk_insert", Scenario::bulkInsert);
        step("cancel", Scenario::cancel);
        step("survive_replacement", Scenario::surviveReplacement);
        try {
            if (conn != null) {
                conn.close();
            }
        } catch (SQLException ignored) {
            // the results are out already
        }
    }

    static Connection connect() throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", System.getenv("DSQLGATE_TEST_USER"));
        props.setProperty("password", System.getenv("DSQLGATE_TEST_PASSWORD"));
        return DriverManager.getConnection(URL, props);
    }

    static String connectTLS() throws Exception {
        conn = connect();
        try (Statement st = conn.createStatement()) {
            st.execute("create table " + SCHEMA + ".items (id int primary key, name text not null, qty int not null)");
            st.execute("create table " + SCHEMA + ".bulk (id int primary key, payload text not null)");
        }
        return "sslmode=verify-full";
    }

    static String paramQuery() throws Exception {
        try (PreparedStatement ps = conn.prepareStatement(
                "select ?::int8 + ?::int8, upper(?::text) || ' ' || ?::text, ?::bool, ?::text")) {
            ps.setLong(1, 40);
            ps.setLong(2, 2);
            ps.setString(3, "dsql");
            ps.setString(4, "ünïcode");
            ps.setBoolean(5, true);
            ps.setNull(6, Types.VARCHAR);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                want("sum", rs.getLong(1), 42L);
                want("text", rs.getString(2), "DSQL ünïcode");
                want("bool", rs.getBoolean(3), true);
                want("null", rs.getString(4), null);
            }
        }
        return "6 parameters incl. NULL";
    }

    static String preparedReuse() throws Exception {
        doubled = conn.prepareStatement("select ?::int * 2, ?::text");
        for (int i = 0; i < 50; i++) {
            doubled.setInt(1, i);
            doubled.setString(2, Integer.toString(i));
            try (ResultSet rs = doubled.executeQuery()) {
                rs.next();
                want("execution " + i, rs.getInt(1) + " " + rs.getString(2), (2 * i) + " " + i);
            }
        }
        want("server-side prepared", doubled.unwrap(PGStatement.class).isUseServerPrepare(), true);
        return "one PreparedStatement, server-side (prepareThreshold=1), 50 executions";
    }

    static String txCommit() throws Exception {
        conn.setAutoCommit(false);
        try (PreparedStatement ps = conn.prepareStatement("insert into " + SCHEMA + ".items (id, name, qty) values (?, ?, ?)")) {
            for (int i = 1; i <= 3; i++) {
                ps.setInt(1, i);
                ps.setString(2, "item " + i);
                ps.setInt(3, i * 10);
                ps.executeUpdate();
            }
            conn.commit();
        } finally {
            conn.setAutoCommit(true);
        }
        want("rows", query(conn, "select count(*) || '|' || sum(qty) from " + SCHEMA + ".items"), "3|60");
        try (Connection other = connect()) {
            want("rows seen by another session", query(other, "select count(*) from " + SCHEMA + ".items"), "3");
        }
        return "3 rows, seen by another session";
    }

    static String txRollback() throws Exception {
        conn.setAutoCommit(false);
        String inside;
        try (Statement st = conn.createStatement()) {
            st.executeUpdate("insert into " + SCHEMA + ".items values (100, 'rolled back', 1)");
            inside = query(conn, "select count(*) from " + SCHEMA + ".items");
            conn.rollback();
        } finally {
            conn.setAutoCommit(true);
        }
        want("rows inside", inside, "4");
        want("rows after", query(conn, "select count(*) from " + SCHEMA + ".items"), "3");
        return "";
    }

    static String errorRecovery() throws Exception {
        try (Statement st = conn.createStatement()) {
            expectState("duplicate key", "23505", () -> st.executeUpdate("insert into " + SCHEMA + ".items values (1, 'duplicate', 0)"));
            want("after the error", query(conn, "select 'alive'"), "alive");
            conn.setAutoCommit(false);
            try {
                expectState("division by zero", "22012", () -> st.executeQuery("select 1/0"));
                expectState("in the failed transaction", "25P02", () -> st.executeQuery("select 1"));
                conn.rollback();
            } finally {
                conn.setAutoCommit(true);
            }
        }
        want("rows", query(conn, "select count(*) from " + SCHEMA + ".items"), "3");
        return "23505, then 22012 and 25P02 in a transaction";
    }

    static void checkSettings() throws Exception {
        want("rows in items (unqualified)", query(conn, "select count(*) from items"), "3");
        want("search_path", query(conn, "select current_setting('search_path')"), SCHEMA + ", public");
        want("TimeZone", query(conn, "select current_setting('TimeZone')"), TZ);
        want("timestamptz text", query(conn, "select '2024-01-15 12:00:00+00'::timestamptz::text"), "2024-01-15 07:00:00-05");
        want("SHOW TimeZone", query(conn, "show TimeZone"), TZ);
    }

    static String setObserved() throws Exception {
        try (Statement st = conn.createStatement()) {
            st.execute("SET search_path TO " + SCHEMA + ", public");
            st.execute("SET TimeZone TO '" + TZ + "'");
        }
        checkSettings();
        return "search_path, TimeZone";
    }

    static String bulkInsert() throws Exception {
        StringBuilder data = new StringBuilder();
        for (int i = 1; i <= 1000; i++) {
            data.append(i).append("\tpayload ").append(i).append('\n');
        }
        CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
        long n = copy.copyIn("COPY bulk (id, payload) FROM STDIN", new StringReader(data.toString()));
        want("copied", n, 1000L);
        want("rows", query(conn, "select count(*) || '|' || sum(id) from bulk"), "1000|500500");
        return "CopyManager.copyIn (COPY FROM STDIN)";
    }

    static String cancel() throws Exception {
        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
        long took;
        try (Statement st = conn.createStatement()) {
            ScheduledFuture<?> f = timer.schedule(() -> {
                st.cancel();
                return null;
            }, 500, TimeUnit.MILLISECONDS);
            long start = System.nanoTime();
            expectState("pg_sleep(30)", "57014", () -> st.execute("select pg_sleep(30)"));
            took = (System.nanoTime() - start) / 1_000_000;
            f.get();
        } finally {
            timer.shutdownNow();
        }
        if (took > 10_000) {
            throw new AssertionError("the cancel took " + took + " ms");
        }
        checkSettings();
        return "Statement.cancel(): 57014 after " + took + " ms";
    }

    static String surviveReplacement() throws Exception {
        int pid = conn.unwrap(PGConnection.class).getBackendPID(); // the gateway's key, not an upstream's
        try (PreparedStatement byId = conn.prepareStatement("select name from items where id = ?")) {
            byId.setInt(1, 2);
            want("before the kill", queryOne(byId), "item 2");
            killAllUpstreams();
            checkSettings();
            byId.setInt(1, 3);
            want("prepared after the kill", queryOne(byId), "item 3");
            want("server-side prepared", byId.unwrap(PGStatement.class).isUseServerPrepare(), true);
        }
        doubled.setInt(1, 21);
        doubled.setString(2, "x");
        want("prepared in prepared_reuse", queryOne(doubled), "42");
        want("same client connection", conn.isClosed() + " " + conn.unwrap(PGConnection.class).getBackendPID(), "false " + pid);
        return "search_path, TimeZone, 2 server-side prepared statements";
    }

    // --- helpers ---

    interface SQLBody {
        Object run() throws SQLException;
    }

    static void expectState(String what, String state, SQLBody body) {
        try {
            body.run();
        } catch (SQLException e) {
            if (!state.equals(e.getSQLState())) {
                throw new AssertionError(what + ": SQLSTATE " + e.getSQLState() + ": " + e.getMessage() + ", want " + state, e);
            }
            return;
        }
        throw new AssertionError(what + ": succeeded, want SQLSTATE " + state);
    }

    static String query(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static String queryOne(PreparedStatement ps) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getString(1);
        }
    }

    static void want(String what, Object got, Object expected) {
        if (!Objects.equals(got, expected)) {
            throw new AssertionError(what + ": got " + got + ", want " + expected);
        }
    }

    static void killAllUpstreams() throws Exception {
        HttpURLConnection http = (HttpURLConnection) URI.create(CONTROL_URL + "/kill?all=1").toURL().openConnection();
        http.setRequestMethod("POST");
        http.setConnectTimeout(10_000);
        http.setReadTimeout(10_000);
        String body;
        try (InputStream in = http.getInputStream()) {
            body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        Matcher m = Pattern.compile("\"killed\"\\s*:\\s*(\\d+)").matcher(body);
        if (http.getResponseCode() != 200 || !m.find() || Integer.parseInt(m.group(1)) < 1) {
            throw new AssertionError("kill: " + http.getResponseCode() + " " + body);
        }
    }

    static void step(String name, Body body) {
        try {
            String detail = body.run();
            emit(name, true, detail == null ? "" : detail);
        } catch (Skip e) {
            emit(name, true, "skipped: " + e.getMessage());
        } catch (Throwable e) {
            String msg = e.getClass().getSimpleName() + ": " + e.getMessage();
            emit(name, false, msg);
            e.printStackTrace();
        }
    }

    static void emit(String step, boolean ok, String detail) {
        System.out.println("{\"step\":\"" + json(step) + "\",\"ok\":" + ok + ",\"detail\":\"" + json(detail) + "\"}");
        System.out.flush();
    }

    static void emitVersion(String version) {
        System.out.println("{\"version\":\"" + json(version) + "\"}");
        System.out.flush();
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder();
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.toString();
    }
}
