package scram_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/dsqlgate/dsqlgate/internal/scram"
)

// The exchange of RFC 7677 section 3 as the server runs it. A real server
// leaves ServerOptions.Rand nil; here it is the RFC's nonce so that the
// output is the RFC's.
func ExampleServerExchange() {
	// A real server has it from its config: ParseVerifier("SCRAM-SHA-256$4096:W22Z...").
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v := scram.NewVerifier("pencil", salt, 4096)

	// AuthenticationSASL advertised scram.Mechanisms(false); the client chose
	// SCRAM-SHA-256 in SASLInitialResponse.
	e, err := scram.NewServerExchange(v, scram.MechanismSCRAM, scram.ServerOptions{
		Rand: strings.NewReader("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
	})
	if err != nil {
		fmt.Println(err) // 08P01
		return
	}
	serverFirst, err := e.ClientFirst([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))
	if err != nil {
		fmt.Println(err) // 08P01, or 28000/0A000 for the subsets
		return
	}
	fmt.Printf("AuthenticationSASLContinue %s\n", serverFirst)

	serverFinal, err := e.ClientFinal([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if errors.Is(err, scram.ErrAuthFailed) {
		fmt.Println("28P01 password authentication failed")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("AuthenticationSASLFinal %s\n", serverFinal)
	// Output:
	// AuthenticationSASLContinue r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096
	// AuthenticationSASLFinal v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
}

func ExampleVerifier_String() {
	v, err := scram.ParseVerifier("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v)
	fmt.Printf("%#v\n", v)
	// Output:
	// SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$<redacted>:<redacted>
	// scram.Verifier{Iterations:4096, Salt:"W22ZaJ0SNY7soEsUEjb6gQ==", StoredKey:<redacted>, ServerKey:<redacted>}
}
