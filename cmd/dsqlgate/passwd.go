package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

func newPasswdCommand(st streams) *cobra.Command {
	return &cobra.Command{
		Use:   "passwd USER",
		Short: "Print a SCRAM-SHA-256 verifier for a user's password",
		Long: `Read a password and print its SCRAM-SHA-256 verifier (the form PostgreSQL keeps
in pg_authid) for a user entry of the configuration. The password is read from
the terminal without echo (twice), or from the first line of standard input
when it is not a terminal; never from the command line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := readPassword(st)
			if err != nil {
				return err
			}
			v, err := scram.GenerateVerifier(password)
			if err != nil {
				return err
			}
			fmt.Fprintf(st.out, "# user %s\n%s\n", args[0], v.Encode())
			return nil
		},
	}
}

// readPassword reads a password from the terminal (no echo, asked twice)
// or from the first line of a non-terminal standard input.
func readPassword(st streams) (string, error) {
	if f, ok := st.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(st.err, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(st.err)
		if err != nil {
			return "", err
		}
		fmt.Fprint(st.err, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(st.err)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", errors.New("the passwords differ")
		}
		if len(p1) == 0 {
			return "", errors.New("empty password")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(st.in).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on standard input")
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password")
	}
	return line, nil
}
