"""The GitHub side: reading issues (`solve --issue URL`) and the Action bot (`codemonkeys github handle`)."""
