"""The methods that make data: Self-Instruct, Alpaca, Dynosaur, Explore-Instruct."""
