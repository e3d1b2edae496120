#!/usr/bin/env bash
# The client scenario for the PostgreSQL JDBC driver (Debian's
# libpostgresql-jdbc-java) on the installed JDK: Scenario.java is compiled
# into a temporary directory and run with the driver's jar on the classpath.
set -euo pipefail
cd "$(dirname "$0")"
jar=/usr/share/java/postgresql.jar
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
javac -encoding UTF-8 -d "$out" -cp "$jar" Scenario.java
# A small heap and the quick compiler only: two cores, a few hundred queries.
java -Dfile.encoding=UTF-8 -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$out:$jar" Scenario
