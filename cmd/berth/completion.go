package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// addCompletions completes the names a command takes, read from its Use
// line: CONTAINER, IMAGE, NETWORK and VOLUME complete from the store
// (a trailing "..." repeats the last), so a new command gets it by
// naming its arguments as the others do.
func addCompletions(cmd *cobra.Command) {
	var places []string
	for _, f := range strings.Fields(cmd.Use)[1:] {
		if f != "[flags]" {
			places = append(places, strings.Trim(f, "[]"))
		}
	}
	if len(places) > 0 && cmd.ValidArgsFunction == nil {
		cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			i := len(args)
			if i >= len(places) {
				if !strings.HasSuffix(places[len(places)-1], "...") {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				i = len(places) - 1
			}
			return completeNames(cmd, strings.TrimSuffix(places[i], "..."))
		}
	}
	for _, sub := range cmd.Commands() {
		addCompletions(sub)
	}
}

func completeNames(cmd *cobra.Command, kind string) ([]string, cobra.ShellCompDirective) {
	if kind != "CONTAINER" && kind != "IMAGE" && kind != "NETWORK" && kind != "VOLUME" {
		return nil, cobra.ShellCompDirectiveDefault
	}
	s, err := openStore(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	defer s.close()
	var names []string
	switch kind {
	case "CONTAINER":
		cs, _ := s.meta.ListContainers(cmd.Context())
		for _, c := range cs {
			names = append(names, c.Name)
		}
	case "IMAGE":
		imgs, _ := s.meta.ListImages(cmd.Context(), nil)
		for _, img := range imgs {
			names = append(names, img.Name)
		}
	case "NETWORK":
		nets, _ := s.eng.Networks.List()
		for _, n := range nets {
			names = append(names, n.Name)
		}
	case "VOLUME":
		vols, _ := s.eng.ListVolumes()
		for _, v := range vols {
			names = append(names, v.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
