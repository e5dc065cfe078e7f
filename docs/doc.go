// Package docs holds lbkit's documentation as Markdown: the architecture,
// the configuration reference and the guides. It has no code; its tests keep
// the documents true:
//
//   - configuration_test.go checks configuration.md against the code: every
//     option of the lb package and every field and constant they take,
//     every key of the daemon's YAML file and every flag of the daemon,
//     both ways; the signatures; the quoted constants' values; the numeric
//     ranges, by trying them on lb.New and Start;
//   - architecture_test.go checks the import graph in architecture.md
//     against the packages' imports;
//   - guides_test.go checks that every Go code block of a guide is quoted
//     from the runnable example the guide points to, that every example is
//     pointed to, and that every link of the Markdown files leads somewhere.
//
// The examples themselves are run by their own tests, under examples/guides.
package docs
