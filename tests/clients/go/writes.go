package main

func writes() {}
