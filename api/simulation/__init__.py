"""What-if simulations: the real workflows and rule handlers on a time-skipping server of their own, a scratch
database seeded from the real one, and recorders in place of every sender."""
